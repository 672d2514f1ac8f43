#!/usr/bin/env bash
# benches/thousand-greeters.sh [RUNS]
#
# A thousand distinct greeter plugins, as a deployment has them: builds the
# release `greeter-host` and the `numbered` fixture plugin, writes 1,000
# copies of the plugin with their names patched (numbered-0000 ...
# numbered-0999), locks the folder, then times whole `greeter-host greet`
# runs (process start to exit: every plugin loaded and called once): locked without a cache, then locked with a
# snapshot cache in the temporary folder and on /dev/shm (the first run of
# each fills it); and, as the baseline, whole runs of a program that only
# dlopens the same files (`load-runner dlopen`), and one that copies and
# hashes them as a locked first start must, then dlopens the copies
# (`load-runner floor`). RUNS (default 5) runs of each. Run from the
# workspace root.
set -euo pipefail

runs=${1:-5}
cargo build --release --locked -p greeter-host -p numbered
cargo build --release --locked -p greeter-benches --bin load-runner
host=target/release/greeter-host
work=$(mktemp -d)
trap 'rm -rf "$work" "/dev/shm/thousand-greeters.$$"' EXIT
dir=$work/plugins
mkdir "$dir"
for i in $(seq -f %04g 0 999); do
    perl -0777 -pe "s/numbered-0000/numbered-$i/g" target/release/libnumbered.so \
        > "$dir/libnumbered_$i.so"
done
"$host" --plugins-dir "$dir" lock > /dev/null

TIMEFORMAT='%R s'
timed() {
    local label=$1
    shift
    for _ in $(seq "$runs"); do
        echo -n "$label: "
        { time "$host" --plugins-dir "$dir" --locked "$@" greet > /dev/null; } 2>&1
    done
}
timed "locked, no cache"
timed "locked, cache in $(dirname "$work")" --snapshot-cache "$work/cache"
mkdir -m 700 "/dev/shm/thousand-greeters.$$"
timed "locked, cache on /dev/shm" --snapshot-cache "/dev/shm/thousand-greeters.$$/cache"
for _ in $(seq "$runs"); do
    echo -n "dlopen only: "
    { time target/release/load-runner dlopen "$dir" > /dev/null; } 2>&1
done
# What a locked first start cannot do without: every file copied into a
# private folder and hashed while copied, then each copy opened.
for _ in $(seq "$runs"); do
    echo -n "copy, hash and dlopen only: "
    { time target/release/load-runner floor "$dir" > /dev/null; } 2>&1
done
