//! SASL (in progress)
