//! Exit codes for every area's typed error, in one place: the table of [`Code`]s is in
//! [`crate::error`]; here each library error (a port that cannot open, a link that closed, a bad
//! input file, a credential the pool cannot give...) is mapped to the code a person or a script
//! sees. This module sits above every area it maps.

use crate::error::{Code, Failure, InputError};

impl From<crate::port::PortError> for Failure {
    fn from(e: crate::port::PortError) -> Failure {
        use crate::port::PortError as P;
        let code = match &e {
            P::BadSelector(_) => Code::Usage,
            P::NotFound { .. } => Code::PortNotFound,
            P::Busy { .. } => Code::PortBusy,
            P::Permission { .. } => Code::PortPermission,
            P::Other { .. } => Code::PortNotFound,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<crate::at::EngineError> for Failure {
    fn from(e: crate::at::EngineError) -> Failure {
        use crate::at::EngineError as E;
        let code = match &e {
            E::Closed | E::Io(_) => Code::PortLost,
            E::Lost { .. } => Code::NoAnswer,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<crate::transcript::ParseError> for Failure {
    fn from(e: crate::transcript::ParseError) -> Failure {
        Failure::usage(e.to_string())
    }
}

impl From<InputError> for Failure {
    fn from(e: InputError) -> Failure {
        Failure::usage(e.to_string())
    }
}

impl From<crate::units::ValueError> for Failure {
    fn from(e: crate::units::ValueError) -> Failure {
        Failure::usage(e.to_string())
    }
}

impl From<crate::provision::job::JobError> for Failure {
    fn from(e: crate::provision::job::JobError) -> Failure {
        Failure::usage(e.to_string())
    }
}

impl From<crate::factory::pool::PoolError> for Failure {
    fn from(e: crate::factory::pool::PoolError) -> Failure {
        use crate::factory::pool::PoolError as P;
        let code = match &e {
            P::Manifest(_) => Code::Usage,
            P::Credential(_) | P::Generate(_) => Code::Credentials,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<crate::cloud::CloudError> for Failure {
    fn from(e: crate::cloud::CloudError) -> Failure {
        Failure::usage(e.to_string())
    }
}

impl From<crate::files::UnsafeName> for Failure {
    fn from(e: crate::files::UnsafeName) -> Failure {
        Failure::usage(e.to_string())
    }
}
