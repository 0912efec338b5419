//! The messages each actor accepts, one module per actor: its public API.
//!
//! An actor's peers depend on these modules, never on the actor itself, and reach it through a
//! [`Recipient`](actix::Recipient) per message or a small handle that bundles them. That keeps
//! the imports pointing one way: leaf modules → storage → metrics → `api` → directory/engine →
//! actors → supervisor (docs/architecture.md draws the layers).

pub mod broadcast;
pub mod cluster;
pub mod connection;
pub mod executor;
pub mod health;
pub mod idempotency;
pub mod project;
pub mod registry;
pub mod supervisor;

/// A handle that can deliver `M`: the `Recipient` it holds for that message.
pub trait Sends<M>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    fn recipient(&self) -> &actix::Recipient<M>;
}

/// Declares a handle: one `Recipient` per message an actor accepts from its peers, built from
/// the actor's address, with `do_send`/`send` picked by message type so that a call site reads
/// as it would with the actor's `Addr`.
macro_rules! handle {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $msg:ty),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            $(pub $field: ::actix::Recipient<$msg>,)+
        }

        impl $name {
            /// The handle of the actor at `addr`.
            pub fn of<A>(addr: &::actix::Addr<A>) -> Self
            where
                A: ::actix::Actor<Context = ::actix::Context<A>> $(+ ::actix::Handler<$msg>)+,
            {
                $name { $($field: addr.clone().recipient(),)+ }
            }

            /// Whether the actor is still running.
            pub fn connected(&self) -> bool {
                true $(&& self.$field.connected())+
            }

            pub fn do_send<M>(&self, msg: M)
            where
                Self: $crate::api::Sends<M>,
                M: ::actix::Message + Send + 'static,
                M::Result: Send,
            {
                $crate::api::Sends::<M>::recipient(self).do_send(msg)
            }

            pub fn send<M>(&self, msg: M) -> ::actix::dev::RecipientRequest<M>
            where
                Self: $crate::api::Sends<M>,
                M: ::actix::Message + Send + 'static,
                M::Result: Send,
            {
                $crate::api::Sends::<M>::recipient(self).send(msg)
            }
        }

        $(impl $crate::api::Sends<$msg> for $name {
            fn recipient(&self) -> &::actix::Recipient<$msg> {
                &self.$field
            }
        })+
    };
}
pub(crate) use handle;
