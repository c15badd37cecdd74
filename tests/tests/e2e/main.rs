//! The end-to-end tests, one module per area, in one test binary: each starts real servers on
//! ephemeral loopback ports and talks to them over real sockets. One binary instead of one per
//! file, because each binary links the whole server: sixty-odd copies of it took most of the
//! build's time and disk. `attack_memory` stays a binary of its own, since it measures the
//! process's resident set.

#[path = "../common/mod.rs"]
mod common;

mod address_limits;
mod adhoc_admin;
mod admin_api;
mod admin_cli;
mod attack_auth;
mod attack_forgery;
mod attack_limits;
mod attack_xml;
mod auth;
mod blocking;
mod bookmarks;
mod bosh;
mod bosh_acks;
mod bosh_sm;
mod byte_quotas;
mod carbons;
mod client_session;
mod component_limits;
mod components;
mod csi;
mod delivered_hook;
mod discovery;
mod durability;
mod external_services;
mod federated_directed_presence;
mod federated_service;
mod federation;
mod http_discovery;
mod im_presence;
mod invite_commands;
mod invites;
mod iq;
mod keepalive;
mod lifecycle;
mod mam;
mod mam_paging;
mod metrics;
mod module_reload;
mod muc;
mod muc_admin;
mod muc_archive_acks;
mod muc_features;
mod muc_federation;
mod muc_limits;
mod offline;
mod pep;
mod pep_notify;
mod platform;
mod presence;
mod private_xml;
mod push;
mod read_rate;
mod register;
mod reload;
mod resources;
mod roster;
mod routing;
mod s2s_limits;
mod server_info;
mod smoke;
mod stream_errors;
mod stream_limits;
mod stream_management;
mod subscriptions;
mod third_party_client;
mod tls;
mod upload;
mod upload_federation;
mod vcard;
mod vcard_conversion;
mod websocket;
