/// What objects cannot do yet: sit inside a collection or an argument's
/// `Option`, be returned by a host service or passed to one, be passed to
/// an object's method, be returned lent.
#[dropin::object]
pub trait Table: Send + Sync {
    fn get(&self, key: &str) -> Option<String>;
}

#[dropin::interface(name = "store", version = "1.0.0")]
pub trait Store: Send + Sync {
    fn take(&self, table: Option<Box<dyn Table>>);
    fn lent(&self) -> &dyn Table;
}

#[dropin::object]
pub trait Visits: Send + Sync {
    fn visit(&self, table: &dyn Table) -> u8;
}

#[dropin::services]
pub trait Lends: Send + Sync {
    fn lend(&self, table: &dyn Table);
}

#[dropin::interface(name = "tables", version = "1.0.0")]
pub trait Tables: Send + Sync {
    fn many(&self) -> Vec<Box<dyn Table>>;
}

#[dropin::services]
pub trait StoreHost: Send + Sync {
    fn table(&self) -> Box<dyn Table>;
}

/// The application's objects of the trait would implement only its
/// methods.
#[dropin::object]
pub trait Described: Send + Sync + std::fmt::Debug {
    fn get(&self) -> u8;
}

/// Its handle could cross threads its objects may not.
#[dropin::object]
pub trait Unshared {
    fn get(&self) -> u8;
}

fn main() {}
