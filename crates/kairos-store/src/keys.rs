//! The byte encoding of job keys, part of the on-disk format.
//!
//! ```text
//! app job:        {namespace} 00 'a' 00 {app_id} 00 {name}
//! actor reminder: {namespace} 00 'r' 00 {actor_type} 00 {actor_id} 00 {name}
//! ```
//!
//! Components never contain a NUL byte (the encoder refuses them), so byte order groups a
//! namespace's jobs, then an owner's jobs, then sorts one owner's jobs by name (UTF-8 byte order
//! is `str` order). An owner's prefix ends with the separator, so `app1`'s prefix never matches a
//! key of `app10`.
//!
//! For keys the encoder accepts, byte order of encoded keys is exactly [`JobKey`]'s `Ord`
//! (namespace, then apps before actors, then owner ids, then name), so [`crate::DueCursor`]'s
//! order is the due index's order.
//!
//! [`partition_of`] is FNV-1a 64 over the encoded key, modulo the partition count: stable across
//! processes, platforms and Rust versions, which a stored due index relies on.

use jiff::Timestamp;
use kairos_core::{JobKey, Owner, Route};

use crate::{Mutation, OwnerScope, StoreError};

const SEP: u8 = 0;
const APP_TAG: u8 = b'a';
const ACTOR_TAG: u8 = b'r';

/// Encodes `key` for storage.
///
/// # Errors
/// [`StoreError::Invalid`] when a component contains a NUL byte.
pub fn encode_key(key: &JobKey) -> Result<Vec<u8>, StoreError> {
    check_component("namespace", &key.namespace)?;
    check_owner(&key.owner)?;
    check_component("job name", &key.name)?;
    Ok(encode_unchecked(key))
}

/// Pairs every mutation with its encoded key, so that a bad key fails the whole batch before
/// anything is written.
///
/// # Errors
/// [`StoreError::Invalid`] for the first key [`encode_key`] refuses.
pub fn encode_mutations(mutations: Vec<Mutation>) -> Result<Vec<(Vec<u8>, Mutation)>, StoreError> {
    mutations.into_iter().map(|m| Ok((encode_key(m.key())?, m))).collect()
}

/// Decodes a key written by [`encode_key`].
///
/// # Errors
/// [`StoreError::Corrupt`] when `bytes` is not such an encoding.
pub fn decode_key(bytes: &[u8]) -> Result<JobKey, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("undecodable job key {:?}", String::from_utf8_lossy(bytes)));
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt())?;
    let parts: Vec<&str> = text.split('\0').collect();
    match parts.as_slice() {
        [namespace, "a", app_id, name] => Ok(JobKey {
            namespace: (*namespace).to_owned(),
            owner: Owner::app(*app_id),
            name: (*name).to_owned(),
        }),
        [namespace, "r", actor_type, actor_id, name] => Ok(JobKey {
            namespace: (*namespace).to_owned(),
            owner: Owner::actor(*actor_type, *actor_id),
            name: (*name).to_owned(),
        }),
        _ => Err(corrupt()),
    }
}

/// The prefix shared by every key of `owner` in `namespace`, and by no other key.
///
/// # Errors
/// [`StoreError::Invalid`] when a component contains a NUL byte.
pub fn owner_prefix(namespace: &str, owner: &Owner) -> Result<Vec<u8>, StoreError> {
    check_component("namespace", namespace)?;
    check_owner(owner)?;
    let mut out = Vec::with_capacity(namespace.len() + 32);
    push_owner_prefix(&mut out, namespace, owner);
    Ok(out)
}

/// The prefix of `owner`'s jobs in `namespace` whose names start with `name_prefix` (what
/// [`JobStore::delete_by_scope`](crate::JobStore::delete_by_scope) deletes for an
/// [`OwnerScope::Owner`]).
///
/// # Errors
/// [`StoreError::Invalid`] when a component contains a NUL byte.
pub fn name_prefix(namespace: &str, owner: &Owner, name_prefix: &str) -> Result<Vec<u8>, StoreError> {
    check_component("job name prefix", name_prefix)?;
    let mut out = owner_prefix(namespace, owner)?;
    out.extend_from_slice(name_prefix.as_bytes());
    Ok(out)
}

/// The key prefix of every job in `scope`.
///
/// # Errors
/// [`StoreError::Invalid`] when a component contains a NUL byte.
pub fn scope_prefix(scope: &OwnerScope) -> Result<Vec<u8>, StoreError> {
    match scope {
        OwnerScope::Owner { namespace, owner, name_prefix: prefix } => name_prefix(namespace, owner, prefix),
        OwnerScope::ActorIdPrefix { namespace, actor_type, id_prefix } => {
            actor_id_prefix(namespace, actor_type, id_prefix)
        }
    }
}

/// The keys a [`JobStore::list`](crate::JobStore::list) of `scope` strictly after `after` covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listing {
    /// Every listed key starts with this.
    pub prefix: Vec<u8>,
    /// Listed keys come strictly after this one (itself inside the scope); from the first key
    /// of the scope when `None`.
    pub after: Option<Vec<u8>>,
}

/// What a listing of `scope` strictly after `after` covers; `None` when `after` lies past every
/// key of the scope (nothing to list).
///
/// # Errors
/// [`StoreError::Invalid`] when a component of the scope or of `after` contains a NUL byte.
pub(crate) fn listing(scope: &OwnerScope, after: Option<&JobKey>) -> Result<Option<Listing>, StoreError> {
    let prefix = scope_prefix(scope)?;
    let after = match after.map(encode_key).transpose()? {
        Some(after) if after.starts_with(&prefix) => Some(after),
        // Before the scope: list it from its start.
        Some(after) if after < prefix => None,
        Some(_) => return Ok(None),
        None => None,
    };
    Ok(Some(Listing { prefix, after }))
}

/// The encoded key of job `name` under `owner_prefix` (an [`owner_prefix`]).
///
/// # Errors
/// [`StoreError::Invalid`] when the name contains a NUL byte.
pub fn name_key(owner_prefix: &[u8], name: &str) -> Result<Vec<u8>, StoreError> {
    check_component("job name", name)?;
    Ok([owner_prefix, name.as_bytes()].concat())
}

/// The prefix shared by every reminder of actors of `actor_type` whose id starts with
/// `id_prefix` (every actor of the type when it is empty).
///
/// # Errors
/// [`StoreError::Invalid`] when a component contains a NUL byte.
pub fn actor_id_prefix(namespace: &str, actor_type: &str, id_prefix: &str) -> Result<Vec<u8>, StoreError> {
    check_component("namespace", namespace)?;
    check_component("actor type", actor_type)?;
    check_component("actor id prefix", id_prefix)?;
    let mut out = Vec::with_capacity(namespace.len() + actor_type.len() + id_prefix.len() + 4);
    out.extend_from_slice(namespace.as_bytes());
    out.extend_from_slice(&[SEP, ACTOR_TAG, SEP]);
    out.extend_from_slice(actor_type.as_bytes());
    out.push(SEP);
    out.extend_from_slice(id_prefix.as_bytes());
    Ok(out)
}

/// The due-index key of a job: `partition` (u32 big-endian), `due` (nanoseconds since the Unix
/// epoch as an i128 with its sign bit flipped, big-endian, so byte order is time order) and the
/// encoded job key. Byte order is `(partition, due, key)` order.
pub fn due_key(partition: u32, due: Timestamp, encoded_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DUE_HEADER + encoded_key.len());
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&order_preserving(due.as_nanosecond()));
    out.extend_from_slice(encoded_key);
    out
}

/// The partition, due time and encoded job key of a [`due_key`].
///
/// # Errors
/// [`StoreError::Corrupt`] when `bytes` is not such a key.
pub fn decode_due_key(bytes: &[u8]) -> Result<(u32, Timestamp, &[u8]), StoreError> {
    let corrupt = || StoreError::Corrupt(format!("undecodable due-index key {bytes:?}"));
    let (partition, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let (due, key) = rest.split_first_chunk::<16>().ok_or_else(corrupt)?;
    let nanos = i128::from_be_bytes(*due) ^ i128::MIN;
    let due = Timestamp::from_nanosecond(nanos).map_err(|_| corrupt())?;
    Ok((u32::from_be_bytes(*partition), due, key))
}

/// The first bytes of every due-index key of `partition`.
pub fn due_partition_prefix(partition: u32) -> [u8; 4] {
    partition.to_be_bytes()
}

/// The prefix shared by the encoded keys of every job whose triggers take `route`, and by no
/// other key: the namespace, the owner tag and the app id or actor type, each followed by NUL.
///
/// # Errors
/// [`StoreError::Invalid`] when a component contains a NUL byte.
pub fn route_prefix(route: &Route) -> Result<Vec<u8>, StoreError> {
    let (namespace, tag, id, what) = match route {
        Route::App { namespace, app_id } => (namespace, APP_TAG, app_id, "app id"),
        Route::Actor { namespace, actor_type } => (namespace, ACTOR_TAG, actor_type, "actor type"),
    };
    check_component("namespace", namespace)?;
    check_component(what, id)?;
    let mut out = Vec::with_capacity(namespace.len() + id.len() + 4);
    out.extend_from_slice(namespace.as_bytes());
    out.extend_from_slice(&[SEP, tag, SEP]);
    out.extend_from_slice(id.as_bytes());
    out.push(SEP);
    Ok(out)
}

/// The route prefix ([`route_prefix`]) of an encoded job key: everything up to and including
/// its third NUL byte (the whole key when it has fewer, which [`encode_key`] never writes).
pub fn route_prefix_of_encoded(encoded_key: &[u8]) -> &[u8] {
    let mut seen = 0;
    for (i, b) in encoded_key.iter().enumerate() {
        if *b == SEP {
            seen += 1;
            if seen == 3 {
                return &encoded_key[..=i];
            }
        }
    }
    encoded_key
}

/// The staged-index key of a job: `partition` (u32 big-endian), the route prefix of the job
/// ([`route_prefix_of_encoded`]), `due` (as in [`due_key`]) and the encoded job key. Byte order
/// is `(partition, route, due, key)` order, so one route's staged jobs of one partition are one
/// range, in due order.
pub fn staged_key(partition: u32, due: Timestamp, encoded_key: &[u8]) -> Vec<u8> {
    let route = route_prefix_of_encoded(encoded_key);
    let mut out = Vec::with_capacity(DUE_HEADER + route.len() + encoded_key.len());
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(route);
    out.extend_from_slice(&order_preserving(due.as_nanosecond()));
    out.extend_from_slice(encoded_key);
    out
}

/// The first bytes of every staged-index key of `partition` and the route whose prefix is
/// `route_prefix`.
pub fn staged_route_prefix(partition: u32, route_prefix: &[u8]) -> Vec<u8> {
    [&partition.to_be_bytes()[..], route_prefix].concat()
}

/// The partition, due time and encoded job key of a [`staged_key`].
///
/// # Errors
/// [`StoreError::Corrupt`] when `bytes` is not such a key.
pub fn decode_staged_key(bytes: &[u8]) -> Result<(u32, Timestamp, &[u8]), StoreError> {
    let corrupt = || StoreError::Corrupt(format!("undecodable staged-index key {bytes:?}"));
    let (partition, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let route = route_prefix_of_encoded(rest);
    if route.len() == rest.len() {
        return Err(corrupt());
    }
    let (due, key) = rest[route.len()..].split_first_chunk::<16>().ok_or_else(corrupt)?;
    if !key.starts_with(route) {
        return Err(corrupt());
    }
    let nanos = i128::from_be_bytes(*due) ^ i128::MIN;
    let due = Timestamp::from_nanosecond(nanos).map_err(|_| corrupt())?;
    Ok((u32::from_be_bytes(*partition), due, key))
}

const DUE_HEADER: usize = 4 + 16;

fn order_preserving(nanos: i128) -> [u8; 16] {
    (nanos ^ i128::MIN).to_be_bytes()
}

/// The prefix of every history record of the job with encoded key `encoded_key`: the key and a
/// NUL (which no key component contains, so no other job's records share it).
pub fn history_prefix(encoded_key: &[u8]) -> Vec<u8> {
    [encoded_key, &[0]].concat()
}

/// The key of record number `seq` of a job's history: [`history_prefix`] and `seq` big-endian,
/// so records sort in the order written.
pub fn history_key(encoded_key: &[u8], seq: u64) -> Vec<u8> {
    [encoded_key, &[0], &seq.to_be_bytes()].concat()
}

/// The smallest byte string greater than every string starting with `prefix`, or `None` when
/// there is none (an empty or all-`0xFF` prefix): the exclusive end of a prefix range scan.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The partition of `key` among `partitions`: FNV-1a 64 over the encoded key, modulo
/// `partitions` (part of the on-disk format). A partition count of 0 is treated as 1.
///
/// A key that [`encode_key`] would refuse still hashes (over the same byte layout), so this
/// never fails.
pub fn partition_of(key: &JobKey, partitions: u32) -> u32 {
    partition_of_encoded(&encode_unchecked(key), partitions)
}

/// [`partition_of`] for an already encoded key.
pub fn partition_of_encoded(encoded_key: &[u8], partitions: u32) -> u32 {
    let hash = fnv1a_64(encoded_key);
    // The remainder is below `partitions`, a u32.
    u32::try_from(hash % u64::from(partitions.max(1))).unwrap_or(0)
}

/// FNV-1a, 64 bit.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Refuses a key component that would break the encoding.
pub(crate) fn check_component(what: &'static str, value: &str) -> Result<(), StoreError> {
    if value.as_bytes().contains(&SEP) {
        return Err(StoreError::Invalid { what, reason: format!("{value:?} contains a NUL byte") });
    }
    Ok(())
}

fn check_owner(owner: &Owner) -> Result<(), StoreError> {
    match owner {
        Owner::App { app_id } => check_component("app id", app_id),
        Owner::Actor { actor_type, actor_id } => {
            check_component("actor type", actor_type)?;
            check_component("actor id", actor_id)
        }
    }
}

fn push_owner_prefix(out: &mut Vec<u8>, namespace: &str, owner: &Owner) {
    out.extend_from_slice(namespace.as_bytes());
    out.push(SEP);
    match owner {
        Owner::App { app_id } => {
            out.extend_from_slice(&[APP_TAG, SEP]);
            out.extend_from_slice(app_id.as_bytes());
        }
        Owner::Actor { actor_type, actor_id } => {
            out.extend_from_slice(&[ACTOR_TAG, SEP]);
            out.extend_from_slice(actor_type.as_bytes());
            out.push(SEP);
            out.extend_from_slice(actor_id.as_bytes());
        }
    }
    out.push(SEP);
}

fn encode_unchecked(key: &JobKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.namespace.len() + key.name.len() + 40);
    push_owner_prefix(&mut out, &key.namespace, &key.owner);
    out.extend_from_slice(key.name.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn actor(ns: &str, ty: &str, id: &str, name: &str) -> JobKey {
        JobKey { namespace: ns.into(), owner: Owner::actor(ty, id), name: name.into() }
    }

    #[test]
    fn encodes_app_and_actor_keys_with_nul_separators() {
        assert_eq!(encode_key(&JobKey::app("ns", "app", "job")).unwrap(), b"ns\0a\0app\0job");
        assert_eq!(encode_key(&actor("ns", "T", "1", "r")).unwrap(), b"ns\x00r\x00T\x001\x00r");
    }

    #[test]
    fn owner_app1_prefix_never_matches_jobs_of_app10() {
        let prefix = owner_prefix("ns", &Owner::app("app1")).unwrap();
        let other = encode_key(&JobKey::app("ns", "app10", "job")).unwrap();
        let own = encode_key(&JobKey::app("ns", "app1", "0job")).unwrap();
        assert!(!other.starts_with(&prefix));
        assert!(own.starts_with(&prefix));
    }

    #[test]
    fn owner_prefixes_separate_apps_actors_and_namespaces() {
        let app = owner_prefix("ns", &Owner::app("T")).unwrap();
        let reminder = encode_key(&actor("ns", "T", "1", "r")).unwrap();
        assert!(!reminder.starts_with(&app));
        let ns_other = encode_key(&JobKey::app("ns2", "T", "j")).unwrap();
        assert!(!ns_other.starts_with(&app));
        let actor_t = owner_prefix("ns", &Owner::actor("T", "1")).unwrap();
        assert!(!encode_key(&actor("ns", "T", "10", "r")).unwrap().starts_with(&actor_t));
        assert!(reminder.starts_with(&actor_t));
    }

    #[test]
    fn actor_id_prefix_matches_ids_starting_with_it_only_within_the_type() {
        let prefix = actor_id_prefix("ns", "T", "ab").unwrap();
        assert!(encode_key(&actor("ns", "T", "abc", "r")).unwrap().starts_with(&prefix));
        assert!(encode_key(&actor("ns", "T", "ab", "r")).unwrap().starts_with(&prefix));
        assert!(!encode_key(&actor("ns", "T", "a", "r")).unwrap().starts_with(&prefix));
        assert!(!encode_key(&actor("ns", "TT", "abc", "r")).unwrap().starts_with(&prefix));
        assert!(!encode_key(&JobKey::app("ns", "T", "ab")).unwrap().starts_with(&prefix));
    }

    #[test]
    fn refuses_components_with_nul_bytes() {
        for key in [
            JobKey::app("n\0s", "app", "job"),
            JobKey::app("ns", "a\0pp", "job"),
            JobKey::app("ns", "app", "jo\0b"),
            actor("ns", "T\0", "1", "r"),
            actor("ns", "T", "\0", "r"),
        ] {
            assert!(matches!(encode_key(&key), Err(StoreError::Invalid { .. })), "{key:?}");
        }
        assert!(matches!(owner_prefix("ns", &Owner::app("a\0")), Err(StoreError::Invalid { .. })));
        assert!(matches!(actor_id_prefix("ns", "T", "\0"), Err(StoreError::Invalid { .. })));
    }

    #[test]
    fn decode_refuses_garbage() {
        for bytes in
            [&b""[..], b"ns\0x\0app\0job", b"ns\0a\0app", b"ns\0a\0app\0job\0extra", b"\xff\0a\0b\0c"]
        {
            assert!(matches!(decode_key(bytes), Err(StoreError::Corrupt(_))), "{bytes:?}");
        }
    }

    #[test]
    fn prefix_end_is_the_exclusive_upper_bound() {
        assert_eq!(prefix_end(b"ab\0"), Some(b"ab\x01".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn partition_is_fnv1a_of_the_encoded_key() {
        // FNV-1a 64 reference values.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
        let key = JobKey::app("default", "myapp", "job");
        let encoded = encode_key(&key).unwrap();
        assert_eq!(u64::from(partition_of(&key, 256)), fnv1a_64(&encoded) % 256);
        assert_eq!(partition_of(&key, 0), 0);
        assert_eq!(partition_of(&key, 1), 0);
    }

    #[test]
    fn due_keys_order_by_partition_then_time_then_key() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let ordered = [
            due_key(0, t("1900-01-01T00:00:00Z"), b"z"),
            due_key(0, t("1969-12-31T23:59:59.999999999Z"), b"a"),
            due_key(0, t("1970-01-01T00:00:00Z"), b"a"),
            due_key(0, t("1970-01-01T00:00:00Z"), b"b"),
            due_key(0, t("2026-01-01T00:00:00Z"), b"a"),
            due_key(1, t("1800-01-01T00:00:00Z"), b"a"),
            due_key(256, t("1800-01-01T00:00:00Z"), b"a"),
        ];
        assert!(ordered.windows(2).all(|w| w[0] < w[1]));
        let (p, due, key) = decode_due_key(&ordered[1]).unwrap();
        assert_eq!((p, due, key), (0, t("1969-12-31T23:59:59.999999999Z"), &b"a"[..]));
        assert!(decode_due_key(b"short").is_err());
    }

    #[test]
    fn route_prefixes_are_the_owner_prefix_of_apps_and_the_type_prefix_of_actors() {
        let app = Route::App { namespace: "ns".into(), app_id: "app".into() };
        assert_eq!(route_prefix(&app).unwrap(), owner_prefix("ns", &Owner::app("app")).unwrap());
        let actors = Route::Actor { namespace: "ns".into(), actor_type: "T".into() };
        assert_eq!(route_prefix(&actors).unwrap(), actor_id_prefix("ns", "T", "").unwrap());
        assert!(matches!(
            route_prefix(&Route::App { namespace: "n\0".into(), app_id: "a".into() }),
            Err(StoreError::Invalid { .. })
        ));
    }

    #[test]
    fn staged_keys_order_by_partition_then_route_then_time() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let a = encode_key(&JobKey::app("ns", "a", "z")).unwrap();
        let a2 = encode_key(&JobKey::app("ns", "a", "b")).unwrap();
        let b = encode_key(&JobKey::app("ns", "b", "a")).unwrap();
        let ordered = [
            staged_key(0, t("2030-01-01T00:00:00Z"), &a),
            staged_key(0, t("2031-01-01T00:00:00Z"), &a2),
            staged_key(0, t("2000-01-01T00:00:00Z"), &b),
            staged_key(1, t("1999-01-01T00:00:00Z"), &a),
        ];
        assert!(ordered.windows(2).all(|w| w[0] < w[1]));
        let prefix = staged_route_prefix(0, &route_prefix(&Route::of(&JobKey::app("ns", "a", "x"))).unwrap());
        assert!(ordered[0].starts_with(&prefix) && ordered[1].starts_with(&prefix));
        assert!(!ordered[2].starts_with(&prefix) && !ordered[3].starts_with(&prefix));
        assert_eq!(decode_staged_key(&ordered[1]).unwrap(), (0, t("2031-01-01T00:00:00Z"), &a2[..]));
        for bad in [&b"\0\0\0\0ns\0a\0"[..], b"\0\0", b"\0\0\0\0ns\0a\0a\0short"] {
            assert!(decode_staged_key(bad).is_err(), "{bad:?}");
        }
    }

    fn component() -> impl Strategy<Value = String> {
        "[^\\x00]{0,12}"
    }

    fn any_key() -> impl Strategy<Value = JobKey> {
        let owner = prop_oneof![
            component().prop_map(Owner::app),
            (component(), component()).prop_map(|(t, i)| Owner::actor(t, i)),
        ];
        (component(), owner, component()).prop_map(|(namespace, owner, name)| JobKey {
            namespace,
            owner,
            name,
        })
    }

    proptest! {
        #[test]
        fn keys_round_trip(key in any_key()) {
            let encoded = encode_key(&key).unwrap();
            prop_assert_eq!(decode_key(&encoded).unwrap(), key.clone());
            prop_assert!(encoded.starts_with(&owner_prefix(&key.namespace, &key.owner).unwrap()));
        }

        #[test]
        fn one_owners_keys_sort_by_name(ns in component(), app in component(), a in component(), b in component()) {
            let ka = encode_key(&JobKey::app(ns.clone(), app.clone(), a.clone())).unwrap();
            let kb = encode_key(&JobKey::app(ns, app, b.clone())).unwrap();
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        #[test]
        fn encoded_order_is_job_key_order(a in any_key(), b in any_key()) {
            prop_assert_eq!(encode_key(&a).unwrap().cmp(&encode_key(&b).unwrap()), a.cmp(&b));
        }

        #[test]
        fn other_owners_never_share_a_prefix(a in any_key(), b in any_key()) {
            prop_assume!((&a.namespace, &a.owner) != (&b.namespace, &b.owner));
            let prefix = owner_prefix(&a.namespace, &a.owner).unwrap();
            prop_assert!(!encode_key(&b).unwrap().starts_with(&prefix));
        }

        #[test]
        fn due_keys_round_trip(p in any::<u32>(), secs in -377_705_116_800i64..253_402_207_200, key in proptest::collection::vec(any::<u8>(), 0..10)) {
            let due = Timestamp::from_second(secs).unwrap();
            let bytes = due_key(p, due, &key);
            prop_assert_eq!(decode_due_key(&bytes).unwrap(), (p, due, &key[..]));
        }

        #[test]
        fn staged_keys_round_trip(p in any::<u32>(), secs in -377_705_116_800i64..253_402_207_200, key in any_key()) {
            let due = Timestamp::from_second(secs).unwrap();
            let encoded = encode_key(&key).unwrap();
            let bytes = staged_key(p, due, &encoded);
            prop_assert_eq!(decode_staged_key(&bytes).unwrap(), (p, due, &encoded[..]));
            let route = route_prefix(&Route::of(&key)).unwrap();
            prop_assert_eq!(route_prefix_of_encoded(&encoded), &route[..]);
            prop_assert!(bytes.starts_with(&staged_route_prefix(p, &route)));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode_key(&bytes);
        }

        #[test]
        fn partition_is_in_range(key in any_key(), partitions in 1u32..1000) {
            prop_assert!(partition_of(&key, partitions) < partitions);
        }
    }
}
