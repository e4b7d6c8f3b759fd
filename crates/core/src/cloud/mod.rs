//! Cloud sign-in, computed on the host: what a module must present to a cloud's MQTT broker or
//! HTTPS endpoint. Pure functions, checked byte for byte against `shared/vectors/cloud/`.
//!
//! - [`aliyun`]: Aliyun IoT Platform one-device-one-secret MQTT credentials, HTTPS auth
//!   parameters and one-type-one-secret dynamic registration.

pub mod aliyun;
pub mod aws;

/// A sign-in that cannot be computed: a parameter the platform's syntax cannot carry, or a
/// key that cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// A parameter (named as its flag) the platform refuses.
    #[error("{0}")]
    Parameter(String),
    /// A signing key that cannot make the signature asked for.
    #[error("{0}")]
    Key(String),
}
