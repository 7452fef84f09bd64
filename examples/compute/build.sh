#!/bin/sh
# Builds mandelbrot.wasm from mandelbrot.c with Debian's clang, lld and wasi-libc (apt-get install clang
# lld wasi-libc libclang-rt-dev-wasm32): a WASI preview-1 command, as p2pos compute runs (compute.md §1).
# -ffp-contract=off: no fused multiply-add, so a native build of the same source gives the same bytes.
set -eu
cd "$(dirname "$0")"
clang --target=wasm32-wasi -O2 -ffp-contract=off -o "${1:-mandelbrot.wasm}" mandelbrot.c
