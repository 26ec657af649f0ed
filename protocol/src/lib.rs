//! The Switchboard wire contract, free of IO: how phone numbers become ids,
//! how every MQTT topic is built and parsed, and the JSON payloads carried on
//! them. The server, the SDK and the tests all speak through this crate, so a
//! topic or payload has exactly one definition.

// First: the modules below use its macro.
#[macro_use]
mod names;

pub mod acl;
pub mod error;
pub mod filter;
pub mod http;
pub mod ids;
pub mod payload;
pub mod phone;
pub mod profile;
pub mod topic;
pub mod validate;

pub use error::{ErrorBody, ErrorCode, Invalid};
pub use filter::Filter;
pub use ids::{ClientId, CommandName, Device, Id, IdScheme, PairingCode, Sid};
pub use phone::{Phone, PhoneError, Region};
pub use topic::Topic;
