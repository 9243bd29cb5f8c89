//! The wire types of kairos. PLACEHOLDER: the protos are being written.
