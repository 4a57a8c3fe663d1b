//! Every way a `.rvne` file (or a write request) can be refused: one variant per check,
//! each with the field-level context needed to find the fault.

use core::fmt;

use crate::meta::{DType, Shape};
use crate::name::Name;

/// A refused `.rvne` file or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before a field or section.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The first four bytes are not `45 4E 56 52`.
    BadMagic {
        /// The magic read (little-endian u32).
        got: u32,
    },
    /// A version this reader does not know (only 1 and 2).
    UnsupportedVersion {
        /// The version field.
        got: u16,
    },
    /// v1 flag bits other than bit 0 (dtype) are set.
    UnknownV1Flags {
        /// The unknown bits.
        bits: u8,
    },
    /// A reserved field is not zero.
    ReservedNotZero {
        /// Which field.
        field: &'static str,
        /// Its value.
        got: u32,
    },
    /// The v2 header length field is not 40.
    HeaderLength {
        /// The field value.
        got: u16,
    },
    /// The length the header declares disagrees with the buffer length.
    LengthMismatch {
        /// Total length implied by the header.
        declared: u64,
        /// Actual buffer length.
        actual: usize,
    },
    /// v1 `weights_len` disagrees with what the dims imply.
    WeightsLength {
        /// `weights_len` from the header.
        declared: u64,
        /// Bytes the dims imply (4 matrices per layer + classifier).
        implied: u64,
    },
    /// Stored CRC-32 disagrees with the bytes.
    CrcMismatch {
        /// CRC stored in the footer.
        stored: u32,
        /// CRC computed over the bytes before it.
        computed: u32,
    },
    /// A dimension is zero.
    ZeroDim {
        /// Which dimension.
        field: &'static str,
    },
    /// Fewer than two classes.
    TooFewClasses {
        /// The class count.
        got: usize,
    },
    /// `q_heads % kv_heads != 0`.
    HeadsNotDivisible {
        /// Query heads.
        q_heads: usize,
        /// Key/value heads.
        kv_heads: usize,
    },
    /// `d_model != input_dim` while the model has no embedding.
    WidthWithoutEmbed {
        /// `F`.
        input_dim: usize,
        /// `D`.
        d_model: usize,
    },
    /// The MLP feature bit disagrees with `mlp_hidden`.
    MlpFlagMismatch {
        /// The header's MLP bit.
        flag: bool,
        /// `mlp_hidden` from the dims record.
        mlp_hidden: usize,
    },
    /// Pattern `block_size` is zero.
    ZeroBlockSize,
    /// More global tokens than [`crate::MAX_GLOBALS`].
    TooManyGlobals {
        /// Number listed.
        got: usize,
        /// Capacity.
        max: usize,
    },
    /// Arithmetic on sizes overflowed.
    Overflow {
        /// What was being computed.
        what: &'static str,
    },
    /// v2 required-feature bits this reader does not know.
    UnknownRequiredFeatures {
        /// The unknown bits.
        bits: u32,
    },
    /// The v2 sections do not fit in the buffer.
    SectionOutOfBounds {
        /// Which section.
        section: &'static str,
        /// Its end offset.
        end: u64,
        /// The limit it must not pass.
        limit: u64,
    },
    /// `data_offset` is not the 16-aligned end of the tensor table.
    DataOffset {
        /// The header's `data_offset`.
        got: u64,
        /// The offset the layout implies.
        expected: u64,
    },
    /// A padding byte is not zero.
    NonZeroPadding {
        /// Offset of the byte.
        offset: usize,
    },
    /// A metadata record runs past the metadata section.
    RecordTruncated {
        /// Record tag.
        tag: u16,
        /// Offset of the record within the blob.
        offset: usize,
    },
    /// A metadata record marked required has a tag this reader does not know.
    UnknownRequiredRecord {
        /// Record tag.
        tag: u16,
    },
    /// A metadata record that may appear once appears twice.
    DuplicateRecord {
        /// Record tag.
        tag: u16,
    },
    /// A mandatory metadata record is missing.
    MissingRecord {
        /// Which record.
        record: &'static str,
    },
    /// A metadata record's payload length is wrong for its contents.
    RecordLength {
        /// Which record.
        record: &'static str,
        /// Length expected.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// A boolean byte is neither 0 nor 1.
    InvalidBool {
        /// Which field.
        field: &'static str,
        /// Its value.
        got: u8,
    },
    /// A name list does not have one entry per class / feature.
    NameCount {
        /// Which list.
        list: &'static str,
        /// Entries found.
        got: usize,
        /// Entries the dims imply.
        expected: usize,
    },
    /// A string is not valid UTF-8.
    NotUtf8 {
        /// Which list or field.
        what: &'static str,
        /// Entry index.
        index: usize,
    },
    /// A name is empty.
    EmptyName {
        /// Which list.
        what: &'static str,
        /// Entry index.
        index: usize,
    },
    /// A name occurs twice in a list that must be unique.
    DuplicateName {
        /// Which list.
        what: &'static str,
        /// The repeated name.
        name: Name,
    },
    /// A tensor name is longer than [`crate::MAX_NAME_LEN`].
    NameTooLong {
        /// Table index.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The table holds a different number of tensors than the architecture implies.
    TensorCount {
        /// Count in the header.
        declared: usize,
        /// Count the architecture implies.
        expected: usize,
    },
    /// A tensor table entry has an unknown dtype code.
    UnknownDType {
        /// Tensor name.
        tensor: Name,
        /// The code.
        code: u8,
    },
    /// A tensor table entry has rank 0 or above [`crate::MAX_RANK`].
    BadRank {
        /// Tensor name.
        tensor: Name,
        /// The rank.
        rank: u8,
    },
    /// The table has a tensor the architecture does not imply at that position
    /// (unknown, misplaced or duplicated name).
    UnexpectedTensor {
        /// Table index.
        index: usize,
        /// Name found.
        got: Name,
        /// Name the canonical order expects there.
        expected: Name,
    },
    /// A tensor's shape disagrees with the dims.
    TensorShape {
        /// Tensor name.
        tensor: Name,
        /// Shape in the table.
        got: Shape,
        /// Shape the dims imply.
        expected: Shape,
    },
    /// A tensor's byte length is not `numel × dtype size`.
    TensorLength {
        /// Tensor name.
        tensor: Name,
        /// Length in the table.
        got: u64,
        /// Length implied by shape and dtype.
        expected: u64,
    },
    /// A tensor's offset is not the next 16-aligned position (misaligned, overlapping or
    /// leaving a gap).
    TensorOffset {
        /// Tensor name.
        tensor: Name,
        /// Offset in the table.
        got: u64,
        /// Offset the layout implies.
        expected: u64,
    },
    /// The tensor table's byte length disagrees with its entries.
    TableLength {
        /// `table_len` from the header.
        declared: usize,
        /// Bytes the entries occupy.
        used: usize,
    },
    /// The last tensor does not end right before the CRC footer.
    DataEnd {
        /// End of the last tensor.
        end: u64,
        /// Start of the footer.
        expected: u64,
    },
    /// A destination slice has the wrong length.
    OutputLength {
        /// Elements needed.
        expected: usize,
        /// Elements provided.
        got: usize,
    },
    /// The model cannot be written as v1.
    NotV1Expressible {
        /// Why.
        reason: &'static str,
    },
    /// A tensor handed to the writer has a different element count than its spec, or
    /// the writer's tensor list disagrees with the architecture.
    WriterTensor {
        /// Tensor name.
        tensor: Name,
        /// Elements provided.
        got: usize,
        /// Elements expected.
        expected: usize,
    },
    /// A tensor needed by the writer is missing.
    MissingTensor {
        /// Tensor name.
        tensor: Name,
    },
    /// A blob would exceed the 4 GiB the u32 length fields can describe.
    TooLarge {
        /// Bytes needed.
        bytes: u64,
    },
    /// More metadata records than [`crate::MAX_RECORDS`].
    TooManyRecords {
        /// The cap.
        max: usize,
    },
    /// A name list longer than [`crate::MAX_LIST_NAMES`].
    TooManyNames {
        /// Which list.
        list: &'static str,
        /// Entries declared.
        got: usize,
        /// The cap.
        max: usize,
    },
    /// A string handed to the writer is too long for its length field.
    StringTooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A tensor's table dtype is not the one the model kind implies (float models store
    /// f32 or f16; an int8 model's matrices are i8, its scales f32, its tables i32).
    TensorDType {
        /// Tensor name.
        tensor: Name,
        /// Dtype in the table.
        got: DType,
        /// Dtype implied (`None`: f32 or f16).
        expected: Option<DType>,
    },
    /// A tensor was read as a type its dtype cannot give (an integer tensor as f32, a
    /// float tensor as integers), or a float writer was handed an int8 model.
    DTypeAccess {
        /// Tensor name.
        tensor: Name,
        /// Its dtype.
        dtype: DType,
        /// What was asked for.
        wanted: &'static str,
    },
    /// A metadata record that belongs to a feature bit the header does not set.
    RecordWithoutFeature {
        /// Which record.
        record: &'static str,
    },
    /// The QUANT record names a quantisation scheme this reader does not know.
    UnknownQuantScheme {
        /// The scheme byte.
        got: u8,
    },
    /// A QUANT record field is out of its range.
    QuantParam {
        /// Which field.
        field: &'static str,
        /// Its value.
        got: i64,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// A value of an int8 model's integer table is out of its column's range.
    QuantValue {
        /// Tensor name.
        tensor: Name,
        /// Element index.
        index: usize,
        /// Column name.
        column: &'static str,
        /// Its value.
        got: i64,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// A quantisation scale is not a finite positive f32.
    QuantScale {
        /// Tensor (or record) holding it.
        what: Name,
        /// Element index.
        index: usize,
        /// Its bits.
        bits: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            Truncated { what, needed, available } => write!(f, "truncated {what}: need {needed} bytes, have {available}"),
            BadMagic { got } => write!(f, "not a .rvne file: magic 0x{got:08X}, expected 0x52564E45"),
            UnsupportedVersion { got } => write!(f, "unsupported .rvne version {got} (this reader knows 1 and 2)"),
            UnknownV1Flags { bits } => write!(f, "v1 flags: unknown bits 0x{bits:02X} set (only bit 0, f16, is defined)"),
            ReservedNotZero { field, got } => write!(f, "reserved field {field} is {got}, must be 0"),
            HeaderLength { got } => write!(f, "v2 header_len is {got}, expected 40"),
            LengthMismatch { declared, actual } => write!(f, "header implies {declared} bytes, file has {actual}"),
            WeightsLength { declared, implied } => write!(f, "v1 weights_len is {declared} bytes, dims imply {implied}"),
            CrcMismatch { stored, computed } => write!(f, "CRC mismatch: stored 0x{stored:08X}, computed 0x{computed:08X}"),
            ZeroDim { field } => write!(f, "dimension {field} is 0"),
            TooFewClasses { got } => write!(f, "classes is {got}, need at least 2"),
            HeadsNotDivisible { q_heads, kv_heads } => write!(f, "q_heads {q_heads} is not a multiple of kv_heads {kv_heads}"),
            WidthWithoutEmbed { input_dim, d_model } => write!(f, "d_model {d_model} differs from input_dim {input_dim} but the model has no embedding"),
            MlpFlagMismatch { flag, mlp_hidden } => write!(f, "MLP feature bit is {flag} but mlp_hidden is {mlp_hidden}"),
            ZeroBlockSize => write!(f, "pattern block_size is 0"),
            TooManyGlobals { got, max } => write!(f, "{got} global tokens, at most {max} supported"),
            Overflow { what } => write!(f, "{what} overflows"),
            UnknownRequiredFeatures { bits } => write!(f, "unknown required feature bits 0x{bits:08X}: this reader cannot run the model"),
            SectionOutOfBounds { section, end, limit } => write!(f, "{section} ends at byte {end}, past its limit {limit}"),
            DataOffset { got, expected } => write!(f, "data_offset is {got}, layout implies {expected}"),
            NonZeroPadding { offset } => write!(f, "padding byte at offset {offset} is not zero"),
            RecordTruncated { tag, offset } => write!(f, "metadata record 0x{tag:04X} at offset {offset} runs past the metadata section"),
            UnknownRequiredRecord { tag } => write!(f, "unknown required metadata record 0x{tag:04X}"),
            DuplicateRecord { tag } => write!(f, "metadata record 0x{tag:04X} appears twice"),
            MissingRecord { record } => write!(f, "missing metadata record {record}"),
            RecordLength { record, expected, got } => write!(f, "metadata record {record}: length {got}, contents imply {expected}"),
            InvalidBool { field, got } => write!(f, "{field} is {got}, must be 0 or 1"),
            NameCount { list, got, expected } => write!(f, "{list}: {got} names, dims imply {expected}"),
            NotUtf8 { what, index } => write!(f, "{what} #{index} is not valid UTF-8"),
            EmptyName { what, index } => write!(f, "{what} #{index} is empty"),
            DuplicateName { what, name } => write!(f, "{what}: duplicate name {name:?}"),
            NameTooLong { index, len } => write!(f, "tensor #{index}: name of {len} bytes, at most {} allowed", crate::MAX_NAME_LEN),
            TensorCount { declared, expected } => write!(f, "tensor table holds {declared} tensors, architecture implies {expected}"),
            UnknownDType { tensor, code } => write!(f, "tensor {tensor}: unknown dtype code {code}"),
            BadRank { tensor, rank } => write!(f, "tensor {tensor}: rank {rank}, must be 1..={}", crate::MAX_RANK),
            UnexpectedTensor { index, got, expected } => write!(f, "tensor #{index} is {got}, architecture implies {expected} there"),
            TensorShape { tensor, got, expected } => write!(f, "tensor {tensor}: shape {got}, dims imply {expected}"),
            TensorLength { tensor, got, expected } => write!(f, "tensor {tensor}: {got} bytes, shape and dtype imply {expected}"),
            TensorOffset { tensor, got, expected } => write!(f, "tensor {tensor}: offset {got}, layout implies {expected}"),
            TableLength { declared, used } => write!(f, "tensor table: table_len {declared}, entries use {used}"),
            DataEnd { end, expected } => write!(f, "tensor data ends at {end}, footer starts at {expected}"),
            OutputLength { expected, got } => write!(f, "output slice has {got} elements, tensor has {expected}"),
            NotV1Expressible { reason } => write!(f, "cannot write v1: {reason}"),
            WriterTensor { tensor, got, expected } => write!(f, "tensor {tensor}: {got} values, shape implies {expected}"),
            MissingTensor { tensor } => write!(f, "missing tensor {tensor}"),
            TooLarge { bytes } => write!(f, "blob of {bytes} bytes exceeds the 4 GiB the format can describe"),
            TooManyRecords { max } => write!(f, "more than {max} metadata records"),
            TooManyNames { list, got, max } => write!(f, "{list}: {got} names, at most {max} supported"),
            StringTooLong { what, len } => write!(f, "{what} of {len} bytes is too long for its length field"),
            TensorDType { tensor, got, expected: Some(e) } => write!(f, "tensor {tensor}: dtype {got}, an int8 model stores it as {e}"),
            TensorDType { tensor, got, expected: None } => write!(f, "tensor {tensor}: dtype {got}, a float model stores f32 or f16"),
            DTypeAccess { tensor, dtype, wanted } => write!(f, "tensor {tensor} is {dtype}, cannot be read as {wanted}"),
            RecordWithoutFeature { record } => write!(f, "metadata record {record} present but its feature bit is not set"),
            UnknownQuantScheme { got } => write!(f, "unknown quantisation scheme {got} (this reader knows 1)"),
            QuantParam { field, got, min, max } => write!(f, "QUANT record: {field} is {got}, must be in {min}..={max}"),
            QuantValue { tensor, index, column, got, min, max } => write!(f, "tensor {tensor}: element {index} ({column}) is {got}, must be in {min}..={max}"),
            QuantScale { what, index, bits } => write!(f, "{what}: scale #{index} is {} (bits 0x{bits:08X}), must be finite and positive", f32::from_bits(*bits)),
        }
    }
}

impl core::error::Error for Error {}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
