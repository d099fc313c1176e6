//! Users: an aggregate, its event, a repository and the `CreateUser` use case.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bento_application::{Bus, Codec, UnitOfWork, UnitOfWorkError};
use bento_codec::apache_avro::AvroSchema;
use bento_domain::{AggregateRoot, DomainEvent, EventRecorder, MessageId};
use serde::{Deserialize, Serialize};

/// A user registered. Encoded as JSON by default; as Avro (schema derived from this type) when
/// the Avro codec is registered and selected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, AvroSchema)]
pub struct UserCreated {
    /// The new user's id.
    pub user_id: String,
    /// Where to write to them.
    pub email: String,
    /// What to call them.
    pub name: String,
}

impl DomainEvent for UserCreated {
    const EVENT_TYPE: &'static str = "users.user-created";
    const AGGREGATE_TYPE: &'static str = "user";
    fn aggregate_id(&self) -> String {
        self.user_id.clone()
    }
}

/// The user aggregate.
#[derive(Debug)]
pub struct User {
    id: String,
    email: String,
    events: EventRecorder,
}

impl User {
    /// Registers a user, recording [`UserCreated`].
    pub fn register(id: String, email: String, name: String) -> Result<Self, String> {
        if !email.contains('@') {
            return Err(format!("`{email}` is not an email address"));
        }
        let mut user = User {
            id: id.clone(),
            email: email.clone(),
            events: EventRecorder::default(),
        };
        user.events.record(UserCreated {
            user_id: id,
            email,
            name,
        });
        Ok(user)
    }

    /// The user's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The user's email address.
    pub fn email(&self) -> &str {
        &self.email
    }
}

impl AggregateRoot for User {
    fn events(&mut self) -> &mut EventRecorder {
        &mut self.events
    }
}

/// Where users are kept (in memory for the examples).
#[derive(Clone, Debug, Default)]
pub struct UserRepository {
    users: Arc<Mutex<HashMap<String, String>>>,
}

impl UserRepository {
    /// Stores a user (id -> email).
    pub fn save(&self, user: &User) {
        if let Ok(mut users) = self.users.lock() {
            users.insert(user.id().to_owned(), user.email().to_owned());
        }
    }

    /// How many users are stored.
    pub fn count(&self) -> usize {
        self.users.lock().map(|u| u.len()).unwrap_or_default()
    }
}

/// The command of the `CreateUser` use case.
#[derive(Clone, Debug)]
pub struct CreateUser {
    /// Email address.
    pub email: String,
    /// Display name.
    pub name: String,
}

/// Why a user could not be created.
#[derive(Debug)]
pub enum CreateUserError {
    /// The input was invalid.
    Invalid(String),
    /// The unit of work failed.
    UnitOfWork(UnitOfWorkError),
}

impl std::fmt::Display for CreateUserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CreateUserError::Invalid(reason) => write!(f, "invalid user: {reason}"),
            CreateUserError::UnitOfWork(error) => write!(f, "{error}"),
        }
    }
}

/// The `CreateUser` use case: registers the user, saves it and, once the unit of work has
/// committed, publishes `UserCreated`.
pub async fn create_user<C: Codec>(
    bus: &Bus<C>,
    repository: &UserRepository,
    command: CreateUser,
) -> Result<(String, Vec<MessageId>), CreateUserError> {
    let id = uuid::Uuid::now_v7().to_string();
    let mut user = User::register(id.clone(), command.email, command.name)
        .map_err(CreateUserError::Invalid)?;
    let mut uow = UnitOfWork::new(bus.clone());
    repository.save(&user);
    uow.collect(&mut user);
    let published = uow.commit().await.map_err(CreateUserError::UnitOfWork)?;
    Ok((id, published))
}
