//! What the unpickler produces: small copyable values that refer to objects in an arena.
//!
//! An arena rather than reference-counted trees: the memo then shares objects exactly as
//! Python's does (a dict filled after it was memoized is seen filled through the memo), BINGET
//! copies an index instead of a string, and dropping a deeply nested structure recurses
//! nowhere.

use super::dtype::DType;

/// A pickle value: small and copyable; everything with contents lives in the arena.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// An object of the arena.
    Ref(usize),
}

/// A storage named by a persistent id: `('storage', type, key, location, numel[, view])`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    pub dtype: DType,
    /// The pickled storage class (`torch.FloatStorage`), for messages.
    pub type_name: String,
    pub key: String,
    /// Elements the storage holds, as the persistent id says.
    pub numel: u64,
    /// Element offset into the root storage (legacy storage views; 0 otherwise).
    pub view_offset: u64,
}

/// What `_rebuild_tensor*` was called with.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// The tensor's element type (the storage's, except for `_rebuild_tensor_v3`) and its name.
    pub dtype: DType,
    pub type_name: String,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Entries in insertion order; a repeated key is resolved by the reader (last wins).
    Dict(Vec<(Value, Value)>),
    Global { module: String, name: String },
    Storage(StorageRef),
    Tensor(TensorRef),
    /// Anything we do not model (bytes, sets, objects of other classes); says what it was.
    Opaque(String),
}

/// The result of one pickle: its top-level value and the arena it refers to.
#[derive(Debug)]
pub struct Pickle {
    pub root: Value,
    pub objects: Vec<Object>,
    /// Bytes consumed, up to and including STOP (legacy files hold several pickles in a row).
    pub len: usize,
}

impl Pickle {
    pub fn get(&self, v: Value) -> Option<&Object> {
        match v {
            Value::Ref(i) => self.objects.get(i),
            _ => None,
        }
    }

    pub fn str(&self, v: Value) -> Option<&str> {
        match self.get(v) {
            Some(Object::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// Elements of a tuple or list.
    pub fn items(&self, v: Value) -> Option<&[Value]> {
        match self.get(v) {
            Some(Object::Tuple(t)) | Some(Object::List(t)) => Some(t),
            _ => None,
        }
    }

    /// Every storage the pickle names, by key (what the legacy reader needs to size them).
    pub fn storages(&self) -> impl Iterator<Item = &StorageRef> {
        self.objects.iter().filter_map(|o| match o {
            Object::Storage(s) => Some(s),
            _ => None,
        })
    }

    /// A short description for error messages ("a list", "an argparse.Namespace object").
    pub fn describe(&self, v: Value) -> String {
        match v {
            Value::None => "None".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Int(_) => "an int".into(),
            Value::Float(_) => "a float".into(),
            Value::Ref(_) => match self.get(v) {
                Some(Object::Str(_)) => "a string".into(),
                Some(Object::Tuple(_)) => "a tuple".into(),
                Some(Object::List(_)) => "a list".into(),
                Some(Object::Dict(_)) => "a dict".into(),
                Some(Object::Global { module, name }) => format!("the global {module}.{name}"),
                Some(Object::Storage(_)) => "a storage".into(),
                Some(Object::Tensor(_)) => "a tensor".into(),
                Some(Object::Opaque(what)) => what.clone(),
                None => "nothing".into(),
            },
        }
    }
}
