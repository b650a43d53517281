//! The operations, one floor below both faces: each runs on a `Ctx` (where it runs) with a plain
//! options struct, whether the command line (`cli/`) or the agent (`agent/`) asked for it. Below
//! this floor: `token/`, `cms/`, `mail/`, `ssmax/`, `config`, `profile`; nothing here knows a face.

pub mod ctx;
pub mod decrypt;
pub mod forward;
pub mod lifecycle;
pub mod receive;
pub mod send;
pub mod setup;
pub mod sign;
pub mod status;
pub mod verify;
pub mod view;
