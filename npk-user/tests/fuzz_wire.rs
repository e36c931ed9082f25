//! Fuzzing the wire-format request parser ([`npk_common::service::wire::respond`] and
//! [`check_request`], which the userspace server and, for the checks, the kernel server run)
//! and the reply decoder ([`decode_reply`], what `npk client` reads): mutations of valid
//! requests and replies, and random datagrams up to twice the largest request. Every request
//! must get exactly one reply that decodes and says what the checks say, or none when the
//! reply would be longer than the request; never a panic.

mod fuzz_common;

use std::sync::LazyLock;

use fuzz_common::{DEFAULT_CASES, Input, config, mutations};
use npk::fixtures::random_tabular_model;
use npk_common::infer::{PlainLoop, Scratch};
use npk_common::model::Model;
use npk_common::service::wire::{
    ActiveModel, MAX_REPLY_LEN, MAX_REQUEST_LEN, NO_CLASS, REPLY_HEADER_LEN, REPLY_MAGIC,
    REQUEST_HEADER_LEN, REQUEST_MAGIC, Status, WIRE_VERSION, check_request, decode_reply,
    encode_request, ok_reply_len, respond,
};
use proptest::prelude::*;

/// A 4-input, 3-class model and a 16-input, 5-class one.
static MODELS: LazyLock<[Box<Model>; 2]> = LazyLock::new(|| {
    [
        random_tabular_model(4, &[8], 3, 1).unwrap(),
        random_tabular_model(16, &[8, 8], 5, 2).unwrap(),
    ]
});

/// Per model: a request naming any model and one naming the model's version, then their
/// replies.
static REQUESTS: LazyLock<Vec<Input>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for model in MODELS.iter() {
        let inputs = model.header.num_inputs as usize;
        let features: Vec<i32> = (0..inputs as i32).map(|i| i * 1000 - 3000).collect();
        for model_id in [0, model.header.model_version] {
            let mut buf = [0u8; MAX_REQUEST_LEN];
            let classes = model.header.num_classes as usize;
            let n = encode_request(
                &mut buf,
                0x1234_5678,
                model_id,
                &features,
                ok_reply_len(classes),
            )
            .unwrap();
            out.push(buf[..n].to_vec());
        }
    }
    out.into_iter()
        .map(|bytes| Input::binary(bytes, 64, &[]))
        .collect()
});

static REPLIES: LazyLock<Vec<Input>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for (i, request) in REQUESTS.iter().enumerate() {
        let model = Some(&*MODELS[i / 2]);
        for request in [&request.bytes[..], &request.bytes[..24]] {
            out.push(Input::binary(reply_to(request, model).unwrap(), 64, &[]));
        }
    }
    out
});

const TOKENS: &[&[u8]] = &[
    &REQUEST_MAGIC.to_le_bytes(),
    &REPLY_MAGIC.to_le_bytes(),
    &WIRE_VERSION.to_le_bytes(),
    &[0, 0, 0, 0],
    &[1, 0, 0, 0],
    &[0xff; 4],
    &[0x80, 0, 0, 0],
];

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The server's reply to `request` (userspace reference path), `None` when refused.
fn reply_to(request: &[u8], model: Option<&Model>) -> Option<Vec<u8>> {
    let mut reply = [0u8; MAX_REPLY_LEN];
    let n = respond(
        request,
        model,
        &mut Scratch::new(),
        &mut PlainLoop,
        &mut reply,
    )?;
    Some(reply[..n].to_vec())
}

/// What the checks say about `request` for `model`, written out from docs/wire-format.md.
fn expected_status(request: &[u8], model: Option<&Model>) -> Status {
    if request.len() < REQUEST_HEADER_LEN {
        return Status::ShortPacket;
    }
    if le32(request, 0) != REQUEST_MAGIC {
        return Status::BadMagic;
    }
    if u16::from_le_bytes([request[4], request[5]]) != WIRE_VERSION {
        return Status::BadVersion;
    }
    let Some(model) = model else {
        return Status::NoModel;
    };
    let id = le32(request, 12);
    if id != 0 && id != model.header.model_version {
        return Status::ModelMismatch;
    }
    let padding = usize::from(u16::from_le_bytes([request[6], request[7]]));
    if request.len() != REQUEST_HEADER_LEN + 4 * model.header.num_inputs as usize + padding {
        return Status::WrongFeatureCount;
    }
    Status::Ok
}

/// Answers `request` and checks the reply against the documented checks.
fn answer(request: &[u8], model: Option<&Model>) -> Result<(), TestCaseError> {
    let status = expected_status(request, model);
    let reply_len = match (status, model) {
        (Status::Ok, Some(m)) => REPLY_HEADER_LEN + 4 * m.header.num_classes as usize,
        _ => REPLY_HEADER_LEN,
    };
    let reply = reply_to(request, model);
    let mut head = [0u8; REQUEST_HEADER_LEN];
    let k = request.len().min(REQUEST_HEADER_LEN);
    head[..k].copy_from_slice(&request[..k]);
    let checked = check_request(&head, request.len(), &ActiveModel::of(model));
    prop_assert_eq!(checked.refused, reply_len > request.len());
    let Some(reply) = reply else {
        prop_assert!(
            reply_len > request.len(),
            "refused a request of {} bytes",
            request.len()
        );
        return Ok(());
    };
    let decoded = decode_reply(&reply);
    prop_assert!(decoded.is_ok(), "the reply does not decode: {decoded:?}");
    let decoded = decoded.unwrap();
    prop_assert_eq!(decoded.status, status);
    let request_id = if request.len() >= 12 {
        le32(request, 8)
    } else {
        0
    };
    prop_assert_eq!(decoded.request_id, request_id);
    if status == Status::Ok {
        let classes = model.map_or(0, |m| m.header.num_classes);
        prop_assert!(decoded.class < classes);
        prop_assert_eq!(decoded.num_logits, classes as usize);
    } else {
        prop_assert_eq!(decoded.class, NO_CLASS);
        prop_assert_eq!(reply.len(), REPLY_HEADER_LEN);
    }
    prop_assert_eq!(reply.len(), reply_len);
    // The kernel server runs check_request on the first 16 bytes and the length.
    prop_assert_eq!(checked.status, status);
    Ok(())
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn mutated_requests_get_the_documented_reply(
        which in 0usize..4,
        edits in mutations(TOKENS),
        model in 0usize..3,
    ) {
        let request = REQUESTS[which].mutate(&edits);
        answer(&request, MODELS.get(model).map(|m| &**m))?;
    }

    #[test]
    fn random_datagrams_get_the_documented_reply(
        request in prop::collection::vec(any::<u8>(), 0..2 * MAX_REQUEST_LEN),
        keep_magic in any::<bool>(),
        model in 0usize..3,
    ) {
        let mut request = request;
        if keep_magic && request.len() >= 6 {
            request[..4].copy_from_slice(&REQUEST_MAGIC.to_le_bytes());
            request[4..6].copy_from_slice(&WIRE_VERSION.to_le_bytes());
        }
        answer(&request, MODELS.get(model).map(|m| &**m))?;
    }

    /// Replies from a server: decoded or refused, and what decodes is self-consistent.
    #[test]
    fn mutated_replies_decode_or_are_refused(which in 0usize..8, edits in mutations(TOKENS)) {
        let reply = REPLIES[which].mutate(&edits);
        if let Ok(r) = decode_reply(&reply) {
            prop_assert_eq!(r.num_logits * 4 + REPLY_HEADER_LEN, reply.len());
            prop_assert_eq!(r.status == Status::Ok, r.num_logits >= 2);
        }
    }
}
