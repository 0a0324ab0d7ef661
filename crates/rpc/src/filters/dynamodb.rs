//! Filters in a DynamoDB table every replica of the fleet shares (created by the shared stack; in tests and
//! the local cluster, the AWS emulator's DynamoDB API).
//!
//! One item per filter, keyed by `id` (string): `kind`, `criteria` (the log filter's JSON), `cluster`,
//! `cursor` (`number:hash:sequence`) and `expires_at` (unix seconds, the table's TTL attribute: DynamoDB
//! deletes idle filters by itself, within days, so a read checks the time too). Reads are strongly
//! consistent and the cursor moves with a conditional update, so a poll always starts from the last one's
//! cursor, whichever replica answered it.

use std::collections::HashMap;

use aws_sdk_dynamodb::{
    error::SdkError,
    operation::update_item::UpdateItemError,
    types::{AttributeValue, ReturnValue},
    Client,
};

use super::{Cursor, FilterStore, FilterStoreError, Kind, StoredFilter};

pub struct DynamoFilters {
    client: Client,
    table: String,
}

impl DynamoFilters {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Creates the table as the shared stack does (key `id`, on-demand, TTL on `expires_at`): for the local
    /// cluster and tests, where no stack runs. An existing table is left as it is.
    pub async fn create_table(&self) -> Result<(), FilterStoreError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        let attr = AttributeDefinition::builder()
            .attribute_name("id")
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(unavailable)?;
        let key = KeySchemaElement::builder()
            .attribute_name("id")
            .key_type(KeyType::Hash)
            .build()
            .map_err(unavailable)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr)
            .key_schema(key)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => return Ok(()),
            Err(e) => return Err(unavailable(e)),
        }
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name("expires_at")
            .enabled(true)
            .build()
            .map_err(unavailable)?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn unavailable(e: impl std::fmt::Display) -> FilterStoreError {
    FilterStoreError::Unavailable(format!("dynamodb: {e}"))
}

/// An SDK error with its service error's message (the SDK's own Display says only "service error").
fn sdk<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> FilterStoreError {
    match e.as_service_error() {
        Some(service) => unavailable(service),
        None => unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(&e)),
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn item(id: &str, f: &StoredFilter) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("id".to_string(), s(id)),
        ("kind".to_string(), s(f.kind.name())),
        ("cluster".to_string(), s(&f.cluster)),
        ("cursor".to_string(), s(f.cursor.encode())),
        ("expires_at".to_string(), n(f.expires_at)),
    ]);
    if let Kind::Logs(criteria) = &f.kind {
        item.insert("criteria".to_string(), s(criteria.to_string()));
    }
    item
}

fn parse(item: &HashMap<String, AttributeValue>) -> Result<StoredFilter, FilterStoreError> {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| FilterStoreError::Corrupt(format!("no string attribute {name}")))
    };
    let kind = match text("kind")?.as_str() {
        "logs" => Kind::Logs(
            serde_json::from_str(text("criteria")?)
                .map_err(|e| FilterStoreError::Corrupt(format!("criteria: {e}")))?,
        ),
        "blocks" => Kind::Blocks,
        "pending" => Kind::PendingTransactions,
        other => return Err(FilterStoreError::Corrupt(format!("kind {other:?}"))),
    };
    let expires_at = item
        .get("expires_at")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| FilterStoreError::Corrupt("no numeric attribute expires_at".into()))?;
    Ok(StoredFilter {
        kind,
        cluster: text("cluster")?.clone(),
        cursor: Cursor::decode(text("cursor")?)?,
        expires_at,
    })
}

#[async_trait::async_trait]
impl FilterStore for DynamoFilters {
    async fn insert(&self, id: &str, filter: &StoredFilter) -> Result<(), FilterStoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(id, filter)))
            // Ids are random; a collision must not replace another client's filter.
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredFilter>, FilterStoreError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk)?;
        got.item().map(parse).transpose()
    }

    async fn advance(
        &self,
        id: &str,
        from: &Cursor,
        to: &Cursor,
        expires_at: u64,
    ) -> Result<bool, FilterStoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .update_expression("SET #cursor = :to, expires_at = :expires")
            .condition_expression("#cursor = :from")
            .expression_attribute_names("#cursor", "cursor")
            .expression_attribute_values(":to", s(to.encode()))
            .expression_attribute_values(":from", s(from.encode()))
            .expression_attribute_values(":expires", n(expires_at))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<bool, FilterStoreError> {
        let removed = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk)?;
        Ok(removed.attributes().is_some_and(|a| !a.is_empty()))
    }
}
