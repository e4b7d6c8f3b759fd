//! Cloud sign-in, computed on the host: what a module must present to a cloud's MQTT broker or
//! HTTPS endpoint. Pure functions, checked byte for byte against `shared/vectors/cloud/`.
//!
//! - [`aliyun`]: Aliyun IoT Platform one-device-one-secret MQTT credentials, HTTPS auth
//!   parameters and one-type-one-secret dynamic registration.

pub mod aliyun;
pub mod aws;
