//! Host end-to-end test of the igb receive path with 4 RSS queues: a fake device routes a
//! few thousand frames of a few hundred TCP flows (both directions, IPv4 and IPv6) to the
//! queue that the *programmed* key and redirection table select; each queue handle is then
//! moved to its own thread and drained there without locks. Checks: nothing lost or
//! duplicated, every frame on the queue the software Toeplitz predicts, both directions of
//! every flow on one queue, and every queue used.

use std::collections::HashMap;

use drivers::fake::{FakeHal, FakeRegs, FakeRxDevice};
use drivers::igb::{self, reg, IgbConfig};
use drivers::toeplitz::{self, HashFields};
use drivers::{Reg, RegIo, SYMMETRIC_RSS_KEY};

const QUEUES: u16 = 4;
const RING: usize = 2048;
const FLOWS: u32 = 300;
const FRAMES_PER_DIRECTION: u32 = 5;

fn model() -> FakeRegs {
    let r = FakeRegs::new();
    r.on_write(reg::CTRL, |v, regs| regs.set(reg::CTRL, v & !reg::CTRL_RST));
    r.set(reg::RAH0, 1 << 31);
    r.on_write(reg::MDIC, |v, regs| {
        regs.set(reg::MDIC, v | reg::MDIC_READY)
    });
    r
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

/// One TCP frame; the payload carries (flow, direction, frame id).
fn tcp_frame(v6: bool, src: &[u8], dst: &[u8], sp: u16, dp: u16, tag: [u32; 3]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    if v6 {
        f.extend([0x86, 0xDD, 0x60, 0, 0, 0, 0, 32, 6, 64]);
    } else {
        f.extend([0x08, 0x00, 0x45, 0, 0, 52, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    }
    f.extend(src);
    f.extend(dst);
    let tcp_off = f.len();
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sp.to_be_bytes());
    tcp[2..4].copy_from_slice(&dp.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = 0x18;
    f.extend(tcp);
    assert_eq!(f.len(), tcp_off + 20);
    for t in tag {
        f.extend(t.to_be_bytes());
    }
    f
}

#[test]
fn four_queues_symmetric_rss_no_loss_no_duplicates() {
    let regs = model();
    let hal = FakeHal::new();
    let parts = igb::init::<_, _, RING, RING>(&hal, regs.clone(), &IgbConfig::symmetric(QUEUES))
        .expect("init");
    regs.set_logging(false);

    // The device routes with what the driver programmed, read back from the registers.
    let mut key = [0u8; 40];
    for (i, c) in key.chunks_exact_mut(4).enumerate() {
        c.copy_from_slice(&regs.get(Reg(reg::RSSRK.0 + 4 * i as u32)).to_le_bytes());
    }
    assert_eq!(key, SYMMETRIC_RSS_KEY);
    let mut reta = [0u8; 128];
    for (i, c) in reta.chunks_exact_mut(4).enumerate() {
        c.copy_from_slice(&regs.get(Reg(reg::RETA.0 + 4 * i as u32)).to_le_bytes());
    }
    assert!(regs.get(reg::RXCSUM) & reg::RXCSUM_PCSD != 0);
    let mut devs: Vec<FakeRxDevice> = (0..QUEUES)
        .map(|q| {
            FakeRxDevice::new(
                &regs,
                reg::rdbal(q),
                reg::rdbah(q),
                reg::rdlen(q),
                reg::rdt(q),
            )
        })
        .collect();

    // Flows: 250 IPv4 and 50 IPv6, frames of both directions interleaved.
    let mut rng = Rng(0xF10F);
    let mut frames = Vec::new();
    for flow in 0..FLOWS {
        let v6 = flow >= 250;
        let (a, b): (Vec<u8>, Vec<u8>) = if v6 {
            let mut a = vec![0x20, 0x01, 0x0d, 0xb8];
            let mut b = vec![0xfd, 0, 0, 0];
            for _ in 0..12 {
                a.push(rng.next() as u8);
                b.push(rng.next() as u8);
            }
            (a, b)
        } else {
            (
                vec![10, rng.next() as u8, rng.next() as u8, rng.next() as u8],
                vec![192, 168, (flow % 7) as u8, 1],
            )
        };
        let (pa, pb) = (1024 + (rng.next() % 60000) as u16, 80u16);
        for _ in 0..FRAMES_PER_DIRECTION {
            let id = frames.len() as u32;
            frames.push((flow, tcp_frame(v6, &a, &b, pa, pb, [flow, 0, id])));
            let id = frames.len() as u32;
            frames.push((flow, tcp_frame(v6, &b, &a, pb, pa, [flow, 1, id])));
        }
    }
    let mut predicted = Vec::new();
    for (_, f) in &frames {
        let (hash, ty) = toeplitz::frame_hash(&key, HashFields::ALL, f);
        assert_ne!(ty, toeplitz::HashType::None);
        let q = toeplitz::queue_for(hash, &reta);
        assert!(
            devs[q as usize].deliver(&hal, &regs, f, hash),
            "ring {q} full"
        );
        predicted.push(q);
    }

    // Each queue handle moves to its own thread and is drained there.
    let handles: Vec<_> = parts
        .rx
        .into_iter()
        .map(|mut q| {
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while q.rx_batch(|f, m| {
                    let tag = &f[f.len() - 12..];
                    let id = u32::from_be_bytes(tag[8..12].try_into().unwrap());
                    seen.push((id, m.queue, m.rss_hash));
                }) > 0
                {}
                (q.queue(), seen)
            })
        })
        .collect();
    let mut per_queue = HashMap::new();
    let mut where_seen = vec![None; frames.len()];
    for h in handles {
        let (queue, seen) = h.join().unwrap();
        per_queue.insert(queue, seen.len());
        for (id, q, _) in seen {
            assert_eq!(q, queue);
            assert!(where_seen[id as usize].is_none(), "frame {id} duplicated");
            where_seen[id as usize] = Some(q);
        }
    }
    let mut flow_queue: HashMap<u32, u16> = HashMap::new();
    for (id, (flow, _)) in frames.iter().enumerate() {
        let q = where_seen[id].unwrap_or_else(|| panic!("frame {id} lost"));
        assert_eq!(q, predicted[id], "frame {id} not on the predicted queue");
        assert_eq!(
            *flow_queue.entry(*flow).or_insert(q),
            q,
            "flow {flow} split"
        );
    }
    println!("per-queue frames: {per_queue:?}");
    assert_eq!(per_queue.len(), QUEUES as usize);
    assert!(per_queue.values().all(|&n| n > 0), "every queue used");
    assert_eq!(per_queue.values().sum::<usize>(), frames.len());
    // Keep the regs handle alive to the end (the queues share it).
    let _ = regs.read32(reg::STATUS);
}
