//! A restricted unpickler for the pickles `torch.save` writes (protocols 2-5).
//!
//! Nothing is ever executed: a GLOBAL only names a callable, and REDUCE "calls" it only when it
//! is on a short allow-list (`collections.OrderedDict` and torch's tensor rebuild functions);
//! any other call yields an opaque value, so a checkpoint that also holds an optimizer state or
//! an `argparse.Namespace` still loads. Every read is bounds-checked; the stack, the memo and
//! the arena (`object`) grow by at most one entry per input byte.

use super::dtype::DType;
use super::object::{Object, Pickle, StorageRef, TensorRef, Value};

/// Nesting allowed for rebuild calls wrapped in `_rebuild_from_type_v2` (torch uses one).
const MAX_WRAP: usize = 4;
/// Longest global name or storage key we copy. Copies are what could amplify a small input
/// (one memoized string named again and again), so they are kept short; torch's are.
const MAX_NAME: usize = 256;
/// Most tensor dimensions accepted (torch allows 64).
const MAX_DIMS: usize = 64;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, Value>,
    objects: Vec<Object>,
}

/// Unpickles `data` up to its STOP opcode. Errors are plain reasons ("... at byte N").
pub fn load(data: &[u8]) -> Result<Pickle, String> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: Default::default(), objects: Vec::new() };
    loop {
        let at = m.pos;
        let op = m.byte().map_err(|_| "ends before its STOP opcode (truncated?)".to_string())?;
        match m.step(op) {
            Ok(true) => {
                let root = m.pop().map_err(|e| format!("{e} at byte {at}"))?;
                return Ok(Pickle { root, objects: m.objects, len: m.pos });
            }
            Ok(false) => {}
            Err(e) => return Err(format!("{e} at byte {at}")),
        }
    }
}

type R<T> = Result<T, String>;

impl Machine<'_> {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("truncated")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> R<u64> {
        Ok(u32::from_le_bytes(self.array()?) as u64)
    }

    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length that must fit in what is left of the input.
    fn len(&mut self, n: u64) -> R<usize> {
        usize::try_from(n).ok().filter(|&n| n <= self.data.len() - self.pos).ok_or_else(|| "length runs past the end (truncated?)".to_string())
    }

    fn line(&mut self) -> R<String> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("unterminated line")?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn new_obj(&mut self, o: Object) -> Value {
        self.objects.push(o);
        Value::Ref(self.objects.len() - 1)
    }

    fn push_obj(&mut self, o: Object) {
        let v = self.new_obj(o);
        self.push(v);
    }

    fn pop(&mut self) -> R<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack underflow".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn top(&self) -> R<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        self.stack.get(floor..).and_then(|s| s.last()).copied().ok_or_else(|| "stack underflow".into())
    }

    /// The values pushed since the last MARK (which is removed).
    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let mark = self.marks.pop().ok_or("no MARK")?;
        if mark > self.stack.len() {
            return Err("MARK above the stack".into());
        }
        Ok(self.stack.split_off(mark))
    }

    fn str_obj(&mut self, bytes_len: usize) -> R<()> {
        let s = String::from_utf8_lossy(self.take(bytes_len)?).into_owned();
        self.push_obj(Object::Str(s));
        Ok(())
    }

    fn skip_opaque(&mut self, n: usize, what: &str) -> R<()> {
        self.take(n)?;
        self.push_obj(Object::Opaque(what.into()));
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> R<()> {
        let v = self.top()?;
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> R<()> {
        let v = *self.memo.get(&key).ok_or_else(|| format!("memo entry {key} is not set"))?;
        self.push(v);
        Ok(())
    }

    fn obj_mut(&mut self, v: Value) -> Option<&mut Object> {
        match v {
            Value::Ref(i) => self.objects.get_mut(i),
            _ => None,
        }
    }

    fn append(&mut self, target: Value, items: Vec<Value>) -> R<()> {
        match self.obj_mut(target) {
            Some(Object::List(l)) => l.extend(items),
            // Appending to something we do not model (a set, an opaque object) is harmless.
            Some(Object::Opaque(_)) => {}
            _ => return Err("APPEND to a non-list".into()),
        }
        Ok(())
    }

    fn set_items(&mut self, target: Value, kv: Vec<Value>) -> R<()> {
        if !kv.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        match self.obj_mut(target) {
            Some(Object::Dict(d)) => d.extend(kv.chunks_exact(2).map(|p| (p[0], p[1]))),
            Some(Object::Opaque(_)) => {}
            _ => return Err("SETITEM on a non-dict".into()),
        }
        Ok(())
    }

    fn tuple(&mut self, items: Vec<Value>) {
        self.push_obj(Object::Tuple(items));
    }

    fn global(&mut self, module: String, name: String) {
        self.push_obj(Object::Global { module, name });
    }

    /// Runs one opcode; true at STOP.
    fn step(&mut self, op: u8) -> R<bool> {
        match op {
            b'.' => return Ok(true),
            0x80 => {
                let proto = self.byte()?;
                if proto > 5 {
                    return Err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                self.u64()?; // FRAME: a length hint only
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?;
                self.push(v);
            }
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.push(Value::Int(v as i128));
            }
            b'K' => {
                let v = self.byte()?;
                self.push(Value::Int(v as i128));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.push(Value::Int(v as i128));
            }
            0x8a => {
                let n = self.byte()? as usize;
                let bytes = self.take(n)?.to_vec();
                self.push_long(&bytes);
            }
            0x8b => {
                let n = self.u32()?;
                let n = self.len(n)?;
                let bytes = self.take(n)?.to_vec();
                self.push_long(&bytes);
            }
            b'G' => {
                let v = f64::from_be_bytes(self.array()?);
                self.push(Value::Float(v));
            }
            b'X' => {
                let n = self.u32()?;
                let n = self.len(n)?;
                self.str_obj(n)?;
            }
            0x8c => {
                let n = self.byte()? as usize;
                self.str_obj(n)?;
            }
            0x8d => {
                let n = self.u64()?;
                let n = self.len(n)?;
                self.str_obj(n)?;
            }
            // Python 2 byte strings decode as text (torch.load's default encoding).
            b'T' => {
                let n = self.u32()?;
                let n = self.len(n)?;
                self.str_obj(n)?;
            }
            b'U' => {
                let n = self.byte()? as usize;
                self.str_obj(n)?;
            }
            b'B' => {
                let n = self.u32()?;
                let n = self.len(n)?;
                self.skip_opaque(n, "a bytes object")?;
            }
            b'C' => {
                let n = self.byte()? as usize;
                self.skip_opaque(n, "a bytes object")?;
            }
            0x8e | 0x96 => {
                let n = self.u64()?;
                let n = self.len(n)?;
                self.skip_opaque(n, "a bytes object")?;
            }
            b')' => self.tuple(Vec::new()),
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() < floor + n {
                    return Err("stack underflow".into());
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.tuple(items);
            }
            b't' => {
                let items = self.pop_mark()?;
                self.tuple(items);
            }
            b']' => self.push_obj(Object::List(Vec::new())),
            b'l' => {
                let items = self.pop_mark()?;
                self.push_obj(Object::List(items));
            }
            b'a' => {
                let v = self.pop()?;
                let list = self.top()?;
                self.append(list, vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let list = self.top()?;
                self.append(list, items)?;
            }
            b'}' => self.push_obj(Object::Dict(Vec::new())),
            b'd' => {
                let kv = self.pop_mark()?;
                let d = self.new_obj(Object::Dict(Vec::new()));
                self.set_items(d, kv)?;
                self.push(d);
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                let d = self.top()?;
                self.set_items(d, vec![k, v])?;
            }
            b'u' => {
                let kv = self.pop_mark()?;
                let d = self.top()?;
                self.set_items(d, kv)?;
            }
            0x8f => self.push_obj(Object::Opaque("a set".into())),
            0x90 => {
                self.pop_mark()?;
                self.top()?;
            }
            0x91 => {
                self.pop_mark()?;
                self.push_obj(Object::Opaque("a frozenset".into()));
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                if module.len() + name.len() > MAX_NAME {
                    return Err("implausibly long global name".into());
                }
                self.global(module, name);
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(Object::Str(m)), Some(Object::Str(n))) = (self.get(module), self.get(name)) else {
                    return Err("STACK_GLOBAL needs two strings".into());
                };
                if m.len() + n.len() > MAX_NAME {
                    return Err("implausibly long global name".into());
                }
                let (m, n) = (m.clone(), n.clone());
                self.global(m, n);
            }
            b'R' => {
                let args = self.pop()?;
                let func = self.pop()?;
                let v = self.call(func, args, 0)?;
                self.push(v);
            }
            0x81 => {
                let _args = self.pop()?;
                let cls = self.pop()?;
                let what = format!("{} object", self.global_name(cls).unwrap_or_else(|| "an".into()));
                self.push_obj(Object::Opaque(what));
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let _args = self.pop()?;
                let cls = self.pop()?;
                let what = format!("{} object", self.global_name(cls).unwrap_or_else(|| "an".into()));
                self.push_obj(Object::Opaque(what));
            }
            // BUILD sets an object's state (OrderedDict's `_metadata`, a Namespace's fields):
            // none of it is needed to read the tensors.
            b'b' => {
                self.pop()?;
                self.top()?;
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.persistent(pid)?;
                self.push(v);
            }
            b'q' => {
                let k = self.byte()? as u64;
                self.memo_put(k)?;
            }
            b'r' => {
                let k = self.u32()?;
                self.memo_put(k)?;
            }
            0x94 => {
                let k = self.memo.len() as u64;
                self.memo_put(k)?;
            }
            b'h' => {
                let k = self.byte()? as u64;
                self.memo_get(k)?;
            }
            b'j' => {
                let k = self.u32()?;
                self.memo_get(k)?;
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
        Ok(false)
    }

    /// LONG1/LONG4: little-endian two's complement; wider than 128 bits is opaque.
    fn push_long(&mut self, bytes: &[u8]) {
        if bytes.len() > 16 {
            self.push_obj(Object::Opaque("a big integer".into()));
            return;
        }
        let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
        let mut buf = [if negative { 0xff } else { 0 }; 16];
        buf[..bytes.len()].copy_from_slice(bytes);
        self.push(Value::Int(i128::from_le_bytes(buf)));
    }

    fn get(&self, v: Value) -> Option<&Object> {
        match v {
            Value::Ref(i) => self.objects.get(i),
            _ => None,
        }
    }

    fn global_name(&self, v: Value) -> Option<String> {
        match self.get(v) {
            Some(Object::Global { module, name }) => Some(format!("{module}.{name}")),
            _ => None,
        }
    }


    /// REDUCE: the allow-listed callables; anything else becomes an opaque value.
    fn call(&mut self, func: Value, args: Value, depth: usize) -> R<Value> {
        let Some(Object::Global { module, name }) = self.get(func).cloned() else {
            return Ok(self.new_obj(Object::Opaque("the result of a call".into())));
        };
        // Only the first arguments matter; copying no more keeps a reused huge tuple cheap.
        let a = match self.get(args) {
            Some(Object::Tuple(t)) => t[..t.len().min(8)].to_vec(),
            _ => return Err("REDUCE arguments are not a tuple".into()),
        };
        match (module.as_str(), name.as_str()) {
            // torch pickles an OrderedDict as an empty call followed by SETITEMS.
            ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => Ok(self.new_obj(Object::Dict(Vec::new()))),
            ("torch._utils", "_rebuild_tensor") | ("torch._utils", "_rebuild_tensor_v2") => self.rebuild(&a, None),
            ("torch._utils", "_rebuild_tensor_v3") => {
                let dtype = a.get(6).and_then(|&d| self.global_name(d)).ok_or("_rebuild_tensor_v3 without a dtype")?;
                self.rebuild(&a, Some((DType::from_torch_dtype(&dtype), dtype)))
            }
            // A Parameter is its data tensor; requires_grad and hooks do not matter here.
            ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
                a.first().copied().ok_or_else(|| "_rebuild_parameter without data".into())
            }
            ("torch._tensor", "_rebuild_from_type_v2") | ("torch._tensor", "_rebuild_from_type") if depth < MAX_WRAP => {
                match (a.first(), a.get(2)) {
                    (Some(&f), Some(&inner)) => self.call(f, inner, depth + 1),
                    _ => Err("_rebuild_from_type_v2 needs (func, type, args, state)".into()),
                }
            }
            _ => Ok(self.new_obj(Object::Opaque(format!("a {module}.{name} object")))),
        }
    }

    /// The first `n` elements of a tuple or list (a copy).
    fn head(&self, v: Value, n: usize) -> Option<Vec<Value>> {
        match self.get(v) {
            Some(Object::Tuple(t)) | Some(Object::List(t)) => Some(t[..t.len().min(n)].to_vec()),
            _ => None,
        }
    }

    fn uint(&self, v: Option<&Value>, what: &str) -> R<u64> {
        match v {
            Some(Value::Int(i)) => u64::try_from(*i).map_err(|_| format!("tensor {what} {i} is negative or too large")),
            _ => Err(format!("tensor {what} is not an integer")),
        }
    }

    fn uints(&self, v: Option<&Value>, what: &str) -> R<Vec<u64>> {
        let items = v.and_then(|&v| self.head(v, MAX_DIMS + 1)).ok_or_else(|| format!("tensor {what} is not a tuple"))?;
        if items.len() > MAX_DIMS {
            return Err(format!("tensor {what} has more than {MAX_DIMS} dimensions"));
        }
        items.iter().map(|i| self.uint(Some(i), what)).collect()
    }

    /// `_rebuild_tensor(_v2)(storage, storage_offset, size, stride, ...)`.
    fn rebuild(&mut self, a: &[Value], dtype: Option<(DType, String)>) -> R<Value> {
        let storage = match a.first().and_then(|&s| self.get(s)) {
            Some(Object::Storage(s)) => s.clone(),
            _ => return Err("tensor without a storage".into()),
        };
        let offset = self.uint(a.get(1), "storage offset")?;
        let size = self.uints(a.get(2), "size")?;
        let stride = self.uints(a.get(3), "stride")?;
        if size.len() != stride.len() {
            return Err(format!("tensor size has {} dimensions but stride {}", size.len(), stride.len()));
        }
        let (dtype, type_name) = dtype.unwrap_or_else(|| (storage.dtype, storage.type_name.clone()));
        Ok(self.new_obj(Object::Tensor(TensorRef { storage, dtype, type_name, offset, size, stride })))
    }

    /// BINPERSID: torch's storage ids; anything else is opaque.
    fn persistent(&mut self, pid: Value) -> R<Value> {
        let Some(items) = self.head(pid, 6) else {
            return Ok(self.new_obj(Object::Opaque("a persistent object".into())));
        };
        let is_storage = matches!(items.first().and_then(|&v| self.get(v)), Some(Object::Str(s)) if s == "storage");
        if !is_storage {
            return Ok(self.new_obj(Object::Opaque("a persistent object".into())));
        }
        let type_name = items.get(1).and_then(|&t| self.global_name(t)).ok_or("storage type is not a global")?;
        let dtype = DType::from_storage_type(&type_name);
        let key = match items.get(2).map(|&k| (k, self.get(k))) {
            Some((_, Some(Object::Str(s)))) if s.len() <= MAX_NAME => s.clone(),
            Some((Value::Int(i), _)) => i.to_string(),
            _ => return Err("storage key is not a short string".into()),
        };
        let numel = self.uint(items.get(4), "storage size")?;
        // Legacy view metadata: (view_key, offset, size) of a view into the root storage.
        let view_offset = match items.get(5).and_then(|&v| self.head(v, 2)) {
            Some(view) => self.uint(view.get(1), "storage view offset")?,
            None => 0,
        };
        Ok(self.new_obj(Object::Storage(StorageRef { dtype, type_name, key, numel, view_offset })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_shares_mutated_containers() {
        // [] memo0; then {} with key 'a' -> memo0 appended to later: the dict sees the append.
        let p = b"\x80\x02]q\x00}q\x01X\x01\x00\x00\x00ah\x00sh\x00K\x07a0.";
        let p = load(p).unwrap();
        let Some(Object::Dict(d)) = p.get(p.root) else { panic!("{:?}", p.root) };
        assert_eq!(p.items(d[0].1), Some(&[Value::Int(7)][..]));
    }

    #[test]
    fn long1_magic_number() {
        let p = load(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
        assert_eq!(p.root, Value::Int(0x1950a86a20f9469cfc6c));
        assert_eq!(p.len, 15);
    }

    #[test]
    fn unknown_calls_are_opaque() {
        let p = load(b"\x80\x02cargparse\nNamespace\nq\x00)\x81}b.").unwrap();
        assert_eq!(p.describe(p.root), "argparse.Namespace object");
        let p = load(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.").unwrap();
        assert_eq!(p.describe(p.root), "a os.system object");
    }

    #[test]
    fn errors_name_the_byte() {
        assert!(load(b"\x80\x02a.").unwrap_err().contains("at byte 2"));
        assert!(load(b"\x80\x02X\xff\xff\xff\x7f").unwrap_err().contains("past the end"));
        assert!(load(b"\x80\x02(K\x01").unwrap_err().contains("STOP"));
    }
}
