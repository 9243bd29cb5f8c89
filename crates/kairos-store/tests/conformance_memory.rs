//! The conformance suite on the in-memory store.

use kairos_store::memory::MemoryStore;

kairos_testing::job_store_conformance!(memory_store, || async { MemoryStore::new(8) });

// One partition puts every job in the same due index.
kairos_testing::job_store_conformance!(memory_store_one_partition, || async { MemoryStore::new(1) });

// Versions from a revision counter, as etcd gives them (the contract allows either).
kairos_testing::job_store_conformance!(memory_store_with_revisions, || async {
    MemoryStore::with_revisions(8)
});
