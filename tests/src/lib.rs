//! End-to-end tests of xmppd live in `tests/`; this library is empty.
