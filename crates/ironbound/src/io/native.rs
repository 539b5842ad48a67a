//! ironbound's native model file: safetensors holding the parameters, with the architecture
//! (`NetSpec` as JSON) in the header metadata under "ironbound.architecture".

use super::atomic;
use crate::error::{Error, Result};
use crate::net::{NetSpec, Network};
use crate::tensor::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

const ARCH_KEY: &str = "ironbound.architecture";
const FORMAT_KEY: &str = "ironbound.format";
const FORMAT_VERSION: &str = "1";

pub fn to_bytes(net: &Network) -> Result<Vec<u8>> {
    let params: Vec<(String, Vec<usize>, Vec<u8>)> = net
        .named_params()
        .into_iter()
        .map(|(name, p)| (name, p.dims(), p.to_vec().iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = params
        .iter()
        .map(|(name, shape, bytes)| Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(Error::internal)?)))
        .collect::<Result<Vec<_>>>()?;
    let arch = serde_json::to_string(&net.spec()).map_err(Error::internal)?;
    let meta = HashMap::from([(ARCH_KEY.to_string(), arch), (FORMAT_KEY.to_string(), FORMAT_VERSION.to_string())]);
    safetensors::tensor::serialize(views, Some(meta)).map_err(Error::internal)
}

pub fn save(net: &Network, path: &Path) -> Result<()> {
    atomic::write_bytes(path, &to_bytes(net)?)
}

pub fn from_bytes(bytes: &[u8], path: &Path, device: &Device) -> Result<Network> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::file(path, format!("not a valid safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| Error::file(path, e))?;
    let arch = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(ARCH_KEY))
        .ok_or_else(|| Error::file(path, format!("no '{ARCH_KEY}' in the metadata: not an ironbound model file")))?;
    let spec: NetSpec = serde_json::from_str(arch).map_err(|e| Error::file(path, format!("invalid architecture metadata: {e}")))?;
    spec.build(device, &mut |name, shape| {
        let view = st.tensor(name).map_err(|_| Error::file(path, format!("parameter '{name}' is missing")))?;
        if view.dtype() != Dtype::F32 || view.shape() != shape {
            return Err(Error::file(path, format!("parameter '{name}' is {:?} {:?}, expected F32 {shape:?}", view.dtype(), view.shape())));
        }
        Ok(view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    })
    .map_err(|e| match e {
        Error::InvalidInput(msg) => Error::file(path, msg),
        other => other,
    })
}

pub fn load(path: &Path, device: &Device) -> Result<Network> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    from_bytes(&bytes, path, device)
}
