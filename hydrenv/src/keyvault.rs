//! Key Vault secrets: references in environment values ([`parse_reference`], [`default_vault`],
//! [`bulk_references`]) and fetching them with the Azure SDK ([`KeyVaultSource`]).
//!
//! - [`reference`]: the three reference forms, the bulk import list, name rules; pure parsing,
//!   every error raised before any request.
//! - [`credential`]: which identity reads the vault (managed identity, or a developer login).
//! - [`fetch`]: the SDK calls — parallel, deduplicated, bounded in time and retries, all-or-errors.
//! - [`transport`]: the HTTP client (rustls + ring, verified TLS); the test seam that trusts only a
//!   test CA and resolves a vault host to loopback lives here, as a function no setting reaches.

pub mod credential;
pub mod fetch;
pub mod reference;
pub mod transport;

pub use fetch::{FetchError, FetchErrorKind, FetchOptions, Fetched, KeyVaultSource};
pub use reference::{
    SecretRef, bulk_references, bulk_variable_name, default_vault, parse_reference,
    valid_secret_name,
};
pub use transport::{default_http_client, http_client_for_test_ca};
