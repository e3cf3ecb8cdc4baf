//! The core's errors as gRPC statuses: the reason each error names travels in the details, its
//! sentence as the message. Every service maps through here, so that a new refusal reason is
//! added to its error enum and to nothing else.

use schein_proto::error::refusal;
use tonic::Status;

use crate::domain::access::AccessError;

impl From<AccessError> for Status {
    fn from(error: AccessError) -> Self {
        refusal(error.reason(), error.to_string())
    }
}
