//! Responses this backend created, kept in memory so that `GET`, `DELETE`, `cancel` and
//! `previous_response_id` behave as on the Azure resource that produced them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;

/// Stored response objects by id.
#[derive(Debug, Default)]
pub(crate) struct ResponseStore {
    objects: Mutex<HashMap<String, Value>>,
}

impl ResponseStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Value>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, id: String, object: Value) {
        self.lock().insert(id, object);
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    pub(crate) fn get(&self, id: &str) -> Option<Value> {
        self.lock().get(id).cloned()
    }

    pub(crate) fn remove(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Marks a stored response cancelled and returns it.
    pub(crate) fn cancel(&self, id: &str) -> Option<Value> {
        let mut objects = self.lock();
        let object = objects.get_mut(id)?;
        if let Some(fields) = object.as_object_mut() {
            fields.insert("status".to_owned(), Value::from("cancelled"));
        }
        Some(object.clone())
    }
}
