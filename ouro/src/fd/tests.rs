//! Tests of the fd types and the ring fd table.

use super::*;

#[test]
fn fds_say_what_they_name() {
    assert_eq!(Fd::raw(0).named(), Named::Raw(0));
    assert_eq!(Fd::raw(7).named(), Named::Raw(7));
    assert_eq!(Fd::STALE.named(), Named::Raw(-1));
    assert_eq!(Fd::ring(0).named(), Named::Ring(0));
    assert_eq!(Fd::ring(MAX_SLOTS - 1).named(), Named::Ring(MAX_SLOTS - 1));
    assert_eq!(Fd::ring(5).ring_slot(), Some(5));
    assert_eq!(Fd::raw(5).ring_slot(), None);
}

#[test]
fn freed_slots_are_reused_with_a_new_generation() {
    let mut table = FdTable::new().unwrap();
    let a = table.insert();
    let old = table.handle(a);
    assert_eq!(table.lookup(old), Some(a));
    table.free(a);
    assert_eq!(table.lookup(old), None);
    assert_eq!(table.resolve(old), Fd::STALE);
    let b = table.insert();
    assert_eq!(a, b);
    assert_ne!(table.handle(b), old);
    assert_eq!(table.live(), 1);
}

#[test]
fn a_moving_fd_is_stale_until_its_move_fails() {
    let mut table = FdTable::new().unwrap();
    let (a, b) = (table.insert(), table.insert());
    let (fa, fb) = (table.handle(a), table.handle(b));
    table.begin_move(a);
    table.begin_move(b);
    assert_eq!((table.lookup(fa), table.resolve(fb)), (None, Fd::STALE));
    table.end_move(a, false);
    assert_eq!(table.lookup(fa), Some(a), "given back: the same handle");
    table.end_move(b, true);
    assert_eq!(table.lookup(fb), None);
    assert_eq!(table.moved, [b], "queued for its close");
    table.end_move(b, true);
    assert_eq!(table.moved, [b], "a move ends once");
}

/// A stale handle stays stale for good: a slot whose generation would
/// go round is never used again.
#[test]
fn a_slot_is_retired_before_its_generation_goes_round() {
    let mut table = FdTable::new().unwrap();
    let a = table.insert();
    let first = table.handle(a);
    table.entries[a as usize].generation = u32::MAX;
    let last = table.handle(a);
    table.free(a);
    let b = table.insert();
    assert_ne!(a, b, "the slot is retired");
    assert_eq!(table.lookup(first), None);
    assert_eq!(table.lookup(last), None);
    assert_eq!(table.live(), 1);
}

#[test]
fn a_close_waits_for_the_last_user() {
    let mut table = FdTable::new().unwrap();
    let a = table.insert();
    let fd = table.handle(a);
    let named = [Some(table.resolve(fd)), None];
    assert_eq!(named[0], Some(Fd::ring(a)));
    table.add_users(3, named);
    table.add_users(9, named);
    assert!(table.begin_close(a, 7));
    assert_eq!(table.resolve(fd), Fd::STALE, "closing: no new users");
    assert_eq!(table.remove_users(3, named), [None, None]);
    assert_eq!(table.remove_users(9, named), [Some(7), None]);
    assert!(!table.busy(a));
}

#[test]
fn each_fd_lists_the_tasks_that_name_it() {
    let mut table = FdTable::new().unwrap();
    let (a, b) = (table.insert(), table.insert());
    let (fa, fb) = (Some(Fd::ring(a)), Some(Fd::ring(b)));
    table.add_users(0, [fa, None]);
    table.add_users(5, [fa, fb]); // a splice between them
    table.add_users(2, [fb, fb]); // a splice from b to b
    let users = |table: &FdTable, i| table.users(i);
    assert_eq!(users(&table, a), [5, 0]);
    assert_eq!(users(&table, b), [2, 2, 5]);
    table.remove_users(5, [fa, fb]);
    assert_eq!(users(&table, a), [0]);
    assert_eq!(users(&table, b), [2, 2]);
    table.remove_users(2, [fb, fb]);
    assert!(!table.busy(b));
    table.remove_users(0, [fa, None]);
    assert!(!table.busy(a));
}

#[test]
fn handles_of_another_ring_are_stale() {
    let mut one = FdTable::new().unwrap();
    let other = FdTable::new().unwrap();
    let a = one.insert();
    let mut foreign = one.handle(a);
    foreign.ring = other.ring;
    assert_eq!(one.lookup(foreign), None);
}

#[test]
fn ring_ids_stop_short_of_wrapping() {
    let counter = AtomicU32::new(u32::MAX - 2);
    assert_eq!(take_id(&counter), Some(u32::MAX - 2));
    assert_eq!(take_id(&counter), Some(u32::MAX - 1));
    assert_eq!(take_id(&counter), None);
    assert_eq!(take_id(&counter), None, "no id comes round again");
}
