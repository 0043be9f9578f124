//! docs/asyncapi.yaml documents every subject the services publish, with its
//! payload, and nothing else: each fact of `subjects::ALL_FACTS` is a channel whose
//! address is its subject in the `hosted` namespace and whose message is its
//! payload's; every channel is such a fact. (`.ci/run` validates the document itself
//! with the AsyncAPI CLI.)

use std::collections::BTreeMap;

use hosted_contracts::subjects::{ALL_FACTS, Namespace};

/// The channels of the document: address → the messages it references. Read from the
/// document's own layout (two spaces a level), without a YAML library.
fn channels() -> BTreeMap<String, Vec<String>> {
    let document = include_str!("../../../docs/asyncapi.yaml");
    let section = document
        .split("\nchannels:\n")
        .nth(1)
        .expect("a channels section")
        .split("\noperations:\n")
        .next()
        .unwrap_or_default();
    let mut channels = BTreeMap::new();
    let mut address = None;
    for line in section.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") {
            address = None;
        } else if let Some(value) = line.trim().strip_prefix("address: ") {
            address = Some(value.trim().to_owned());
            channels.insert(value.trim().to_owned(), Vec::new());
        } else if let (Some(address), Some(reference)) = (
            &address,
            line.trim().strip_prefix("$ref: '#/components/messages/"),
        ) {
            channels
                .get_mut(address)
                .expect("the channel's address comes first")
                .push(reference.trim_end_matches('\'').to_owned());
        }
    }
    channels
}

#[test]
fn every_published_subject_is_a_channel_with_its_payload() {
    let channels = channels();
    let namespace = Namespace::new(Namespace::DEFAULT).unwrap();
    let mut wrong = Vec::new();
    for (fact, payload) in ALL_FACTS {
        let subject = namespace.subject(fact);
        let message = payload.trim_start_matches("hosted.v1.");
        match channels.get(&subject) {
            None => wrong.push(format!("{subject}: no channel")),
            Some(messages) if messages != &[message.to_owned()] => {
                wrong.push(format!("{subject}: messages {messages:?}, not [{message}]"));
            }
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_channel_is_a_published_subject() {
    let namespace = Namespace::new(Namespace::DEFAULT).unwrap();
    let published: Vec<String> = ALL_FACTS
        .iter()
        .map(|(fact, _)| namespace.subject(*fact))
        .collect();
    let unknown: Vec<String> = channels()
        .into_keys()
        .filter(|address| !published.contains(address))
        .collect();
    assert!(unknown.is_empty(), "channels of no fact: {unknown:?}");
    assert_eq!(channels().len(), ALL_FACTS.len());
}

#[test]
fn every_message_names_its_protobuf_type() {
    let document = include_str!("../../../docs/asyncapi.yaml");
    for (_, payload) in ALL_FACTS {
        let message = payload.trim_start_matches("hosted.v1.");
        assert!(
            document.contains(&format!("\n    {message}:\n      name: {message}\n")),
            "components.messages.{message} is missing"
        );
        assert!(
            document.contains(&format!("x-protobuf-message: {payload}\n")),
            "{message}'s payload does not name {payload}"
        );
    }
}
