//! virtio-net driver under QEMU (`-device virtio-net-pci`, modern transport, TCG): the image
//! receives 200 frames of assorted sizes and transmits each back; the host's capture must
//! hold the same frames, byte for byte and in order.

use std::time::Duration;

use qemu::{Config, ExitStatus, NicModel};
use tests::{boot, test_app_elf};

const FRAMES: usize = 200;

fn frame(k: usize) -> Vec<u8> {
    // Unicast to the guest-agnostic locally administered address; QEMU's virtio-net is
    // promiscuous after reset. Sizes 60..=1514.
    let len = 60 + (k * 97) % (1514 - 60 + 1);
    let mut f: Vec<u8> = (0..len).map(|i| ((k * 31 + i * 7) % 251) as u8).collect();
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x10]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x20]);
    f[12..14].copy_from_slice(&[0x88, 0xB5]);
    f[14..18].copy_from_slice(&(k as u32).to_be_bytes());
    f
}

#[test]
fn virtio_net_receives_and_transmits_the_same_frames() {
    let mut vm = boot(
        Config::kernel(test_app_elf("nic-virtio"))
            .with_cores(1)
            .with_nic(NicModel::VirtioNet)
            .with_timeout(Duration::from_secs(600)),
    );
    let ready = vm.expect_line("virtio-net ready", |l| l.starts_with("nic-virtio ready"));
    assert!(ready.ends_with("link up"), "{ready}");
    for k in 0..FRAMES {
        vm.nic(0).send(&frame(k)).expect("inject");
    }
    for k in 0..FRAMES {
        let got = vm
            .nic(0)
            .wait_for_frame(Duration::from_secs(60), |_| true)
            .unwrap_or_else(|e| panic!("echo of frame {k} not captured: {e}\n{}", vm.report()));
        assert_eq!(got.data, frame(k), "frame {k} came back changed");
    }
    let done = vm.expect_line("echo count", |l| l.starts_with("nic-virtio echoed "));
    assert_eq!(done, format!("nic-virtio echoed {FRAMES}"));
    let mut finish = vec![0xFF; 6];
    finish.extend([0x02, 0, 0, 0, 0, 0x20, 0x88, 0xB6]);
    finish.resize(60, 0);
    vm.nic(0).send(&finish).expect("finish");
    vm.expect_exit(ExitStatus::Success);
}
