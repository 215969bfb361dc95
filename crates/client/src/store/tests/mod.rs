//! Store tests: local operations and durability ([`local`]), merging pulled batches through
//! every policy ([`merge`], [`convergence`]), convergence of several real replicas under
//! random delivery ([`replicas`]), sealing the outbox and verifying pulled pages
//! ([`sync`]), transactions ([`txn`]) and typed JSON values ([`typed`]). The helpers here build and apply pulled batches without a server.

use sealsync_core::{DeviceId, Hlc, VersionId};
use sealsync_proto::Mutation;

use super::{PulledBatch, VerifiedPage};
use crate::Core;

mod convergence;
mod local;
mod merge;
mod query;
mod replicas;
mod restamp;
mod sync;
mod txn;
mod typed;

type Mut<'a> = (&'a str, u64, Option<&'a [u8]>, Vec<VersionId>);

fn remote(author: DeviceId, seq: u64, muts: Vec<Mut<'_>>) -> PulledBatch {
    let hlc_max = muts.iter().map(|m| m.1).max().unwrap_or(0);
    PulledBatch {
        author,
        seq,
        hash: [seq as u8; 32],
        hlc_max: Hlc(hlc_max),
        mutations: muts
            .into_iter()
            .map(|(k, hlc, v, sup)| Mutation {
                key: k.into(),
                hlc,
                deleted: v.is_none(),
                value: v.unwrap_or_default().to_vec(),
                supersedes: sup.iter().map(|s| s.0.to_vec()).collect(),
            })
            .collect(),
        own_bytes: None,
    }
}

fn apply(r: &mut Core, coll: &str, batches: Vec<PulledBatch>) -> usize {
    let c = r.store.collection(coll).unwrap().unwrap();
    r.store
        .apply_page(
            &c,
            VerifiedPage {
                batches,
                next: c.cursor + 1,
            },
        )
        .unwrap()
}

fn hlc(ms: u64) -> u64 {
    Hlc::from_parts(ms, 0).0
}
