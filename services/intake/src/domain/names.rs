//! Names as identity: the rules live in `hosted-identity`, shared with directory and
//! hlctl; this module is where intake's domain finds them.

pub use hosted_identity::{
    Identity, Likeness, NearReason,
    logins::{LoginPattern, is_login},
    names::{edit_distance, first_given_name, fold, folded_names},
};
