//! Rendezvous (highest-random-weight) hashing of partitions over replicas.
//!
//! Every replica computes, for each partition, a score per live member and picks the member
//! with the highest score. All replicas agree without talking to each other, the spread is even,
//! and a membership change moves only the partitions it must: a joining member takes the
//! partitions where it now scores highest (from whoever held them), a leaving member's
//! partitions go to their runners-up, and no partition moves between members that stay.

/// A stable 64-bit hash of `member` (FNV-1a): the same in every process and every build,
/// unlike `std`'s hasher, which may change between Rust releases.
fn member_hash(member: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// splitmix64's finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The score of `member` for `partition`; higher wins.
pub fn score(member: &str, partition: u32) -> u64 {
    mix(member_hash(member) ^ mix(u64::from(partition).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// The member that should own `partition`: the highest score, ties broken by the smaller id.
/// `None` when there are no members.
pub fn owner_of<'a>(members: impl IntoIterator<Item = &'a str>, partition: u32) -> Option<&'a str> {
    members.into_iter().map(|m| (score(m, partition), std::cmp::Reverse(m))).max().map(|(_, m)| m.0)
}

/// The partitions out of `0..partitions` that `me` should own among `members` (`me` counts as a
/// member whether or not it is listed).
pub fn owned_by<'a>(
    me: &'a str,
    members: impl IntoIterator<Item = &'a str> + Clone,
    partitions: u32,
) -> Vec<u32> {
    (0..partitions).filter(|&p| owner_of(members.clone().into_iter().chain([me]), p) == Some(me)).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spread(members: &[&str], partitions: u32) -> BTreeMap<u32, String> {
        (0..partitions).map(|p| (p, owner_of(members.iter().copied(), p).unwrap().to_owned())).collect()
    }

    #[test]
    fn owner_is_deterministic_and_independent_of_member_order() {
        let a = spread(&["r1", "r2", "r3"], 256);
        let b = spread(&["r3", "r1", "r2"], 256);
        assert_eq!(a, b);
        // Pinned values: a change of the hash would split a mixed-version cluster.
        assert_eq!(score("r1", 0), score("r1", 0));
        assert_eq!(member_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(member_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn no_members_means_no_owner() {
        assert_eq!(owner_of(std::iter::empty(), 3), None);
    }

    #[test]
    fn partitions_are_spread_evenly() {
        for n in [2usize, 3, 4, 5, 8] {
            let members: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}:50006")).collect();
            let refs: Vec<&str> = members.iter().map(String::as_str).collect();
            let owners = spread(&refs, 1024);
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for owner in owners.values() {
                *counts.entry(owner.as_str()).or_default() += 1;
            }
            let fair = 1024 / n;
            for (member, count) in &counts {
                assert!(
                    count.abs_diff(fair) * 100 <= fair * 25,
                    "{n} members: {member} owns {count} of 1024 partitions (fair share {fair})"
                );
            }
            assert_eq!(counts.len(), n, "every member owns something");
        }
    }

    #[test]
    fn a_joining_member_takes_partitions_only_for_itself() {
        let before = spread(&["a", "b", "c"], 512);
        let after = spread(&["a", "b", "c", "d"], 512);
        let mut moved = 0;
        for p in 0..512 {
            if before[&p] != after[&p] {
                assert_eq!(after[&p], "d", "partition {p} moved between members that stayed");
                moved += 1;
            }
        }
        // About a quarter moves to the newcomer.
        assert!((96..=160).contains(&moved), "{moved} of 512 partitions moved");
    }

    #[test]
    fn a_leaving_member_hands_over_only_its_own_partitions() {
        let before = spread(&["a", "b", "c"], 512);
        let after = spread(&["a", "c"], 512);
        for p in 0..512 {
            if before[&p] != "b" {
                assert_eq!(before[&p], after[&p], "partition {p} moved though its owner stayed");
            } else {
                assert_ne!(after[&p], "b");
            }
        }
    }

    #[test]
    fn owned_by_counts_me_as_a_member() {
        let mine = owned_by("me", ["other"], 64);
        let theirs: Vec<u32> = (0..64).filter(|p| !mine.contains(p)).collect();
        assert!(!mine.is_empty() && !theirs.is_empty());
        assert_eq!(owned_by("me", std::iter::empty::<&str>(), 8), (0..8).collect::<Vec<_>>());
        assert_eq!(owned_by("me", ["me", "other"], 64), mine, "listing me twice changes nothing");
    }
}
