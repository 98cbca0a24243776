//! The default Ferrule app: prints what the machine has (cores, memory, PCI devices).
fn main() {}
