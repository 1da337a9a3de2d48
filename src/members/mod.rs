//! The loyalty programme's members and their points ledger. A member is found by card number
//! or by phone and bound to at most one follower (openid). Points are a ledger: every earn,
//! redeem, expiry and adjustment is an entry, and a balance is always their sum.

pub mod import;
