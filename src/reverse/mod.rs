//! Reverse sync (Supabase → SQL Server). A webhook is verified and decoded by `http::webhook`,
//! made durable in the [`inbox`] before it is answered, and written into SQL Server by the
//! [`applier`] through [`apply`]'s rules (ownership, versions). [`catchup`] fetches rows the
//! webhooks missed (agent down, pg_net dropped them) into the same inbox.

pub mod applier;
pub mod apply;
pub mod catchup;
pub mod event;
pub mod inbox;

pub use applier::{Applier, ApplierHandle};
pub use event::{EventSource, NewEvent};
pub use inbox::{Inbox, InboxError, InboxStats};
