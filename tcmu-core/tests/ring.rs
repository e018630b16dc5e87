//! The ring against the simulated kernel.

use proptest::prelude::*;
use scsi_sense_codes::ScsiStatus;
use tcmu_core::sim::{SimConfig, SimKernel};
use tcmu_core::{Command, Reply, Ring, RingEntry, RingError};
use tcmu_sys::*;

fn command(ring: &mut Ring) -> Command {
    match ring.next_entry().unwrap() {
        Some(RingEntry::Command(c)) => c,
        other => panic!("expected a command, got {other:?}"),
    }
}

fn sim(flags: u16) -> (SimKernel, Ring) {
    let sim = SimKernel::new(SimConfig {
        flags,
        ..SimConfig::default()
    });
    let ring = Ring::new(sim.map()).unwrap();
    (sim, ring)
}

const ALL_CAPS: u16 =
    TCMU_MAILBOX_FLAG_CAP_OOOC | TCMU_MAILBOX_FLAG_CAP_READ_LEN | TCMU_MAILBOX_FLAG_CAP_TMR;

#[test]
fn a_command_round_trips_with_data() {
    let (mut k, mut ring) = sim(ALL_CAPS);
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let id = k
        .submit(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &payload, 0)
        .unwrap();
    let mut cmd = command(&mut ring);
    assert_eq!(cmd.id(), id);
    assert_eq!(cmd.cdb(), &[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    let (_, data) = cmd.cdb_and_data();
    assert!(
        data.count() > 1,
        "the simulated kernel scatters large buffers"
    );
    let got: Vec<u8> = (0..data.count())
        .flat_map(|i| data.segment(i).to_vec())
        .collect();
    assert_eq!(got, payload);
    assert!(ring.next_entry().unwrap().is_none());
    ring.complete(cmd, &Reply::good()).unwrap();
    assert!(ring.take_notify());
    assert!(!ring.take_notify(), "one notification per batch");
    let done = k.reap();
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].id, done[0].status), (id, 0));
    assert!(k.broken().is_none());
}

#[test]
fn data_in_is_delivered_and_short_reads_use_read_len() {
    let (mut k, mut ring) = sim(ALL_CAPS);
    let id = k.submit(&[0x12, 0, 0, 0, 255, 0], &[], 255).unwrap();
    let mut cmd = command(&mut ring);
    let (_, data) = cmd.cdb_and_data();
    data.segment_mut(0)[..4].copy_from_slice(b"abcd");
    let mut reply = Reply::good();
    reply.data_in_len = Some(4);
    ring.complete(cmd, &reply).unwrap();
    let done = k.reap();
    assert_eq!(done[0].id, id);
    assert_eq!(done[0].read_len, Some(4));
    assert_eq!(done[0].data_in, b"abcd");
}

#[test]
fn without_read_len_the_unused_buffer_is_zeroed() {
    let (mut k, mut ring) = sim(TCMU_MAILBOX_FLAG_CAP_OOOC);
    // Leave garbage in the data area, as the kernel does.
    k.submit(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0xEE; 512], 0)
        .unwrap();
    let cmd = command(&mut ring);
    ring.complete(cmd, &Reply::good()).unwrap();
    k.reap();
    k.submit(&[0x12, 0, 0, 0, 255, 0], &[], 255).unwrap();
    let mut cmd = command(&mut ring);
    cmd.cdb_and_data().1.segment_mut(0)[..2].copy_from_slice(b"ok");
    let mut reply = Reply::good();
    reply.data_in_len = Some(2);
    ring.complete(cmd, &reply).unwrap();
    let done = k.reap();
    assert_eq!(done[0].read_len, None);
    assert_eq!(&done[0].data_in[..2], b"ok");
    assert!(
        done[0].data_in[2..].iter().all(|&b| b == 0),
        "old data leaked"
    );
}

#[test]
fn out_of_order_completions_are_accepted_by_the_kernel() {
    let (mut k, mut ring) = sim(ALL_CAPS);
    let ids: Vec<u16> = (0..8)
        .map(|i| k.submit(&[0x00, 0, 0, 0, 0, i], &[], 0).unwrap())
        .collect();
    let mut cmds: Vec<Command> = (0..8).map(|_| command(&mut ring)).collect();
    cmds.reverse();
    for (n, cmd) in cmds.into_iter().enumerate() {
        let status = if n % 2 == 0 {
            ScsiStatus::Good
        } else {
            ScsiStatus::Busy
        };
        ring.complete(cmd, &Reply::status(status)).unwrap();
    }
    let mut done = k.reap();
    assert!(k.broken().is_none(), "{:?}", k.broken());
    done.sort_by_key(|c| c.id);
    assert_eq!(done.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
    // Reverse order: the last submitted completed first, with status GOOD.
    assert_eq!(done[7].status, 0);
    assert_eq!(done[6].status, 8);
}

#[test]
fn in_order_kernels_see_completions_in_ring_order() {
    let (mut k, mut ring) = sim(TCMU_MAILBOX_FLAG_CAP_READ_LEN);
    let a = k.submit(&[0, 0, 0, 0, 0, 0], &[], 0).unwrap();
    let b = k.submit(&[0, 0, 0, 0, 0, 0], &[], 0).unwrap();
    let ca = command(&mut ring);
    let cb = command(&mut ring);
    ring.complete(cb, &Reply::status(ScsiStatus::Busy)).unwrap();
    assert!(
        !ring.take_notify(),
        "the tail cannot pass the first command yet"
    );
    assert!(k.reap().is_empty());
    ring.complete(ca, &Reply::good()).unwrap();
    assert!(ring.take_notify());
    let done = k.reap();
    assert_eq!(
        done.iter().map(|c| (c.id, c.status)).collect::<Vec<_>>(),
        vec![(a, 0), (b, 8)]
    );
}

#[test]
fn the_ring_wraps_with_pad_entries_many_times() {
    let mut k = SimKernel::new(SimConfig {
        cmdr_size: 1024,
        ..SimConfig::default()
    });
    let mut ring = Ring::new(k.map()).unwrap();
    for round in 0..500u32 {
        let data = round.to_le_bytes().repeat(100 + (round as usize % 7) * 50);
        let id = k
            .submit(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &data, 0)
            .unwrap();
        let cmd = command(&mut ring);
        assert_eq!(cmd.id(), id);
        assert_eq!(cmd.data().segment(0), &data[..]);
        ring.complete(cmd, &Reply::good()).unwrap();
        assert_eq!(k.reap().len(), 1);
    }
    assert!(k.broken().is_none());
}

#[test]
fn a_command_with_bad_iovecs_fails_alone() {
    let (mut k, mut ring) = sim(ALL_CAPS);
    k.submit(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[1; 512], 0)
        .unwrap();
    // Corrupt the iovec base of that entry: point it at the mailbox.
    let entry = k.cmdr_off();
    k.overwrite(entry + 48, &0u64.to_ne_bytes()).unwrap();
    let good = k.submit(&[0, 0, 0, 0, 0, 0], &[], 0).unwrap();
    let cmd = command(&mut ring);
    assert_eq!(
        cmd.id(),
        good,
        "the malformed command never reaches the handler"
    );
    ring.complete(cmd, &Reply::good()).unwrap();
    let done = k.reap();
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].status, 2, "CHECK CONDITION");
    assert_eq!(done[0].sense[2] & 0xF, 0x4, "HARDWARE ERROR");
    assert_eq!((done[0].sense[12], done[0].sense[13]), (0x44, 0x00));
    assert_eq!(done[1].status, 0);
}

#[test]
fn overlapping_buffers_of_two_in_flight_commands_are_refused() {
    let (mut k, mut ring) = sim(ALL_CAPS);
    k.submit(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[1; 512], 0)
        .unwrap();
    let first = command(&mut ring);
    k.submit(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[2; 512], 0)
        .unwrap();
    // Make the second command's iovec point into the first one's page.
    let second_entry = k.cmdr_off() + 112;
    let inside_first = first.data().regions()[0].offset + 8;
    k.overwrite(second_entry + 48, &inside_first.to_ne_bytes())
        .unwrap();
    assert!(
        ring.next_entry().unwrap().is_none(),
        "second command failed, not handed out"
    );
    ring.complete(first, &Reply::good()).unwrap();
    let done = k.reap();
    assert_eq!(done.len(), 2);
    assert_eq!(done.iter().filter(|c| c.status == 2).count(), 1);
    assert!(k.broken().is_none());
}

#[test]
fn a_command_dropped_without_a_reply_is_failed_not_left_on_the_ring() {
    let (mut k, mut ring) = sim(0); // in order: a stuck slot would stall all
    let lost = k
        .submit(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[], 512)
        .unwrap();
    let next = k.submit(&[0, 0, 0, 0, 0, 0], &[], 0).unwrap();
    drop(command(&mut ring));
    let cmd = command(&mut ring);
    assert_eq!(cmd.id(), next);
    ring.complete(cmd, &Reply::good()).unwrap();
    let done = k.reap();
    assert_eq!(done.iter().map(|c| c.id).collect::<Vec<_>>(), [lost, next]);
    assert_eq!(done[0].status, 2, "CHECK CONDITION");
    assert_eq!(done[0].sense[2] & 0xF, 0x4, "HARDWARE ERROR");
    assert_eq!(ring.in_flight(), 0);
    assert!(k.broken().is_none());
}

#[test]
fn two_rings_on_one_map_never_lend_the_same_pages() {
    let (mut k, mut first) = sim(ALL_CAPS);
    let mut second = Ring::new(k.map()).unwrap();
    k.submit(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[7; 512], 0)
        .unwrap();
    let mut held = command(&mut first);
    assert!(
        second.next_entry().unwrap().is_none(),
        "the second ring fails the command instead of lending its buffer again"
    );
    let (_, data) = held.cdb_and_data();
    assert_eq!(data.segment_mut(0), &[7; 512][..]);
}

#[test]
fn the_simulated_kernel_cannot_write_under_a_buffer_handed_out() {
    let (mut k, mut ring) = sim(ALL_CAPS);
    k.submit(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[7; 512], 0)
        .unwrap();
    let cmd = command(&mut ring);
    let at = cmd.data().regions()[0].offset;
    assert!(k.overwrite(at, &[0; 8]).is_err());
    ring.complete(cmd, &Reply::good()).unwrap();
    assert!(k.overwrite(at, &[0; 8]).is_ok(), "given back at completion");
}

#[test]
fn unknown_entry_opcodes_are_flagged_and_skipped() {
    let (mut k, mut ring) = sim(ALL_CAPS);
    let mut raw = vec![0u8; 16];
    raw[..4].copy_from_slice(&tcmu_hdr_set_len(tcmu_hdr_set_op(0, 5), 16).to_ne_bytes());
    k.submit_raw(&raw, 16).unwrap();
    assert!(ring.next_entry().unwrap().is_none());
    assert_eq!(
        k.entry_uflags(0) & TCMU_UFLAG_UNKNOWN_OP,
        TCMU_UFLAG_UNKNOWN_OP
    );
    assert!(ring.take_notify(), "the tail moved past the unknown entry");
}

#[test]
fn task_management_entries_are_reported() {
    let (mut k, mut ring) = sim(ALL_CAPS);
    let id = k.submit(&[0, 0, 0, 0, 0, 0], &[], 0).unwrap();
    k.submit_tmr(TCMU_TMR_ABORT_TASK, &[id]).unwrap();
    let cmd = command(&mut ring);
    match ring.next_entry().unwrap() {
        Some(RingEntry::TaskManagement(t)) => {
            assert_eq!(t.kind, TCMU_TMR_ABORT_TASK);
            assert_eq!(t.cmd_ids, vec![id]);
        }
        other => panic!("expected TMR, got {other:?}"),
    }
    ring.complete(cmd, &Reply::good()).unwrap();
    assert_eq!(k.reap().len(), 1);
    assert!(k.broken().is_none());
}

#[test]
fn a_bad_entry_length_stops_the_ring_for_good() {
    let (mut k, mut ring) = sim(ALL_CAPS);
    let mut raw = vec![0u8; 8];
    raw[..4]
        .copy_from_slice(&tcmu_hdr_set_len(tcmu_hdr_set_op(0, TCMU_OP_CMD), 4096).to_ne_bytes());
    k.submit_raw(&raw, 8).unwrap();
    assert!(matches!(ring.next_entry(), Err(RingError::Corrupt(_))));
    assert!(matches!(ring.next_entry(), Err(RingError::Corrupt(_))));
}

#[test]
fn a_bad_mailbox_is_refused() {
    let k = SimKernel::new(SimConfig::default());
    k.overwrite(0, &1u16.to_ne_bytes()).unwrap();
    assert!(matches!(Ring::new(k.map()), Err(RingError::Version(1))));
    let k = SimKernel::new(SimConfig::default());
    k.overwrite(8, &0x7FFF_FFF8u32.to_ne_bytes()).unwrap();
    assert!(matches!(Ring::new(k.map()), Err(RingError::Geometry(_))));
}

proptest! {
    /// Arbitrary bytes as ring contents and head: the ring never panics,
    /// never loops forever, and stays inside the map.
    #[test]
    fn arbitrary_ring_contents_are_survived(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        head in 0u32..1024,
        flags in any::<u16>(),
    ) {
        let mut k = SimKernel::new(SimConfig { cmdr_size: 1024, data_size: 64 * 1024, flags });
        k.overwrite(k.cmdr_off(), &bytes[..bytes.len().min(1024)]).unwrap();
        k.submit_raw(&[], head & !7).unwrap();
        let mut ring = Ring::new(k.map()).unwrap();
        let mut held = Vec::new();
        for _ in 0..2048 {
            match ring.next_entry() {
                Ok(Some(RingEntry::Command(c))) => held.push(c),
                Ok(Some(RingEntry::TaskManagement(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        for c in held {
            let _ = ring.complete(c, &Reply::good());
        }
    }
}

#[test]
fn variable_length_cdbs_are_copied_whole() {
    let (mut k, mut ring) = sim(ALL_CAPS);
    let mut cdb = vec![0u8; 40];
    cdb[0] = 0x7F;
    cdb[7] = 32; // additional CDB length: 8 + 32 bytes in all
    cdb[39] = 0xAB;
    k.submit(&cdb, &[], 0).unwrap();
    let cmd = command(&mut ring);
    assert_eq!(cmd.cdb(), &cdb[..]);
    ring.complete(cmd, &Reply::good()).unwrap();
    assert_eq!(k.reap().len(), 1);
}

proptest! {
    /// Completions in any order satisfy the kernel's rules (the simulated
    /// kernel checks each one as the real one does): every command comes
    /// back exactly once, with its own status, and the ring never breaks,
    /// with out-of-order completion and without it.
    #[test]
    fn any_completion_order_is_accepted(
        n in 1usize..40,
        order in proptest::collection::vec(any::<u16>(), 40),
        out_of_order in any::<bool>(),
        rounds in 1usize..4,
    ) {
        let flags = if out_of_order { ALL_CAPS } else { TCMU_MAILBOX_FLAG_CAP_READ_LEN };
        let (mut k, mut ring) = sim(flags);
        for _ in 0..rounds {
            let ids: Vec<u16> = (0..n).map(|i| k.submit(&[0, 0, 0, 0, 0, i as u8], &[7; 100], 0).unwrap()).collect();
            let mut cmds: Vec<Command> = (0..n).map(|_| command(&mut ring)).collect();
            let mut expected = std::collections::HashMap::new();
            let mut i = 0;
            while !cmds.is_empty() {
                let cmd = cmds.swap_remove(order[i % order.len()] as usize % cmds.len());
                let status = (cmd.id() % 3) as u8 * 4; // GOOD, CONDITION MET, BUSY
                expected.insert(cmd.id(), status);
                let reply = Reply::status(ScsiStatus::from_u8(status).unwrap());
                ring.complete(cmd, &reply).unwrap();
                i += 1;
            }
            let done = k.reap();
            prop_assert!(k.broken().is_none(), "{:?}", k.broken());
            prop_assert_eq!(done.len(), n);
            for c in &done {
                prop_assert_eq!(Some(&c.status), expected.get(&c.id));
            }
            let mut got: Vec<u16> = done.iter().map(|c| c.id).collect();
            got.sort_unstable();
            let mut want = ids.clone();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }
}
