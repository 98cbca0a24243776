//! Integration tests that boot Ferrule images in QEMU. The tests live in `tests/tests/`.
#![forbid(unsafe_code)]
