//! The one layer every request passes through: it counts and times each call by method ([`RpcMetrics`]), and
//! gives parameters that fail to deserialize the execution APIs' error shape.
//!
//! jsonrpsee answers such parameters with -32602 and the parser's message in `data`; the execution APIs (and
//! geth, and so hive's comparison) have -32602 with the message in `message` and no `data`. Rewriting the
//! response here keeps every namespace's typed parameters free of hand-written parsing. Only -32602 answers
//! that carry `data` are touched: the namespaces' own -32602 errors have none.
//!
//! Batches are unrolled here, each call through [`RpcServiceT::call`] of this layer, so that batched calls
//! are counted and shaped like single ones (jsonrpsee's own batch handling calls the inner service).

use std::{future::Future, sync::Arc, time::Instant};

use jsonrpsee::{
    server::{
        middleware::rpc::{Batch, BatchEntry, Notification, Request, RpcServiceT},
        BatchResponseBuilder, MethodResponse,
    },
    types::ErrorObject,
};

use crate::metrics::RpcMetrics;

#[derive(Clone)]
pub struct Layer<S> {
    pub inner: S,
    pub metrics: Arc<RpcMetrics>,
    /// The server's response size cap, which a batch's answers share.
    pub max_response_size: usize,
}

impl<S> RpcServiceT for Layer<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse, BatchResponse = MethodResponse>
        + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let (inner, metrics) = (self.inner.clone(), self.metrics.clone());
        let method = request.method_name().to_owned();
        let id = request.id().into_owned();
        let started = Instant::now();
        async move {
            let mut response = inner.call(request).await;
            if response.as_error_code() == Some(-32602) {
                if let Some(message) = parse_error_data(&response) {
                    let extensions = response.extensions().clone();
                    response = MethodResponse::error(id, crate::error::invalid_params(message))
                        .with_extensions(extensions);
                }
            }
            metrics.record(&method, started.elapsed().as_secs_f64(), response.is_error());
            response
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let this = self.clone();
        async move {
            let mut answers = BatchResponseBuilder::new_with_limit(this.max_response_size);
            let mut notified = false;
            for entry in batch {
                let answer = match entry {
                    Ok(BatchEntry::Call(request)) => this.call(request).await,
                    Ok(BatchEntry::Notification(n)) => {
                        notified = true;
                        this.inner.notification(n).await;
                        continue;
                    }
                    Err(e) => {
                        let (error, id) = e.into_parts();
                        MethodResponse::error(id, error)
                    }
                };
                if let Err(too_large) = answers.append(answer) {
                    return too_large;
                }
            }
            if answers.is_empty() && notified {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(answers.finish())
            }
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

/// The `data` of a -32602 answer jsonrpsee's parameter parsing gave (the parser's message), if it has one.
fn parse_error_data(response: &MethodResponse) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        error: ErrorObject<'a>,
    }
    let answer: Answer = serde_json::from_str(response.as_json().get()).ok()?;
    let data = answer.error.data()?;
    Some(serde_json::from_str::<String>(data.get()).unwrap_or_else(|_| data.get().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonrpsee::types::Id;

    #[test]
    fn only_parameter_errors_with_data_are_reshaped() {
        let with_data = MethodResponse::error(
            Id::Number(1),
            ErrorObject::owned(-32602, "Invalid params", Some("invalid length 3, expected 32 bytes")),
        );
        assert_eq!(parse_error_data(&with_data).as_deref(), Some("invalid length 3, expected 32 bytes"));
        let ours = MethodResponse::error(Id::Number(1), crate::error::invalid_params("empty request"));
        assert_eq!(parse_error_data(&ours), None);
    }
}
