import C3POCore
import Foundation

/// The neighbours' prefix states of an index built with `c3po-index build --cache-states`
/// (Index/README.md, "Stored states"): per reference, what tail work from the lowest critical
/// layer up needs of its prefill (the keys and values of every position of those layers in
/// float16, the residual entering each of them at the last position, the prompt's tokens), so
/// that `c3po-apply --method ngd` (and `--alpha search`) run no prefill of a neighbour.
///
/// Four `.npy` files, for Python as for us:
/// - `states_rows.npy` int64 [count, 3]: per reference, its first token in `states_tokens.npy`,
///   its token count (0: no state, e.g. a record without a prompt), and the `Checksum64` of its
///   `states_kv.npy` block followed by its `states_inputs.npy` row (as a signed 64-bit integer),
///   checked whenever the state is read: those two files are too large to hash with SHA-256 at
///   every load, so a load checks their sizes and `c3po-index verify` their SHA-256;
/// - `states_tokens.npy` int64 [tokens]: the prompts' token ids, one reference after another;
/// - `states_kv.npy` float16 [tokens × layers × 2 × kv_width], flat: per reference (its first
///   token t0, n tokens) the block at t0 × layers × 2 × kv_width holds, per layer from
///   `from_layer` up, its keys [n, kv_width] then its values [n, kv_width];
/// - `states_inputs.npy` float32 [count, layers, hidden].
public enum StoredStates {
    public static let rowsFile = "states_rows.npy"
    public static let tokensFile = "states_tokens.npy"
    public static let kvFile = "states_kv.npy"
    public static let inputsFile = "states_inputs.npy"
    public static let files = [rowsFile, tokensFile, kvFile, inputsFile]
    /// The files a load checks by size only (each state by its checksum when read); `c3po-index
    /// verify` hashes them whole.
    public static let checkedByEntry: Set<String> = [kvFile, inputsFile]

    /// Reads and checks every state (`c3po-index verify`); the number with a state.
    public static func checkAll(_ r: Reader) throws -> Int {
        try (0..<r.count).reduce(0) { $0 + (try r.entry($1) == nil ? 0 : 1) }
    }

    /// Writes the four files as the references come, in row order; nothing is held but one
    /// reference's state.
    public final class Writer {
        let shape: IndexManifest.States
        let rows: NPY.Writer, tokens: NPY.Writer, kv: NPY.Writer, inputs: NPY.Writer
        private(set) var count = 0, withState = 0, tokenCount = 0
        private let zeros: [Float]

        /// `fromLayer`, `layers` (from it up), `keyValueWidth` and `hidden` fix every entry's shape.
        public init(folder: URL, fromLayer: Int, layers: Int, keyValueWidth: Int, hidden: Int) throws {
            shape = IndexManifest.States(fromLayer: fromLayer, layers: layers, keyValueWidth: keyValueWidth, hidden: hidden,
                                         references: 0, tokens: 0)
            rows = try NPY.Writer(url: folder.appendingPathComponent(rowsFile), dtype: .int64)
            tokens = try NPY.Writer(url: folder.appendingPathComponent(tokensFile), dtype: .int64)
            kv = try NPY.Writer(url: folder.appendingPathComponent(kvFile), dtype: .float16)
            inputs = try NPY.Writer(url: folder.appendingPathComponent(inputsFile), dtype: .float32)
            zeros = [Float](repeating: 0, count: layers * hidden)
        }

        /// The next reference's state; nil: it has none.
        public func append(_ e: TailSnapshot?) throws {
            defer { count += 1 }
            guard let e else {
                try rows.append(integers: [tokenCount, 0, 0])
                try inputs.append(zeros)
                return
            }
            let n = e.tokens.count, w = shape.keyValueWidth
            guard n > 0, e.fromLayer == shape.fromLayer, e.keys.count == shape.layers, e.values.count == shape.layers, e.lastInputs.count == shape.layers,
                  e.keys.allSatisfy({ $0.count == n * w }), e.values.allSatisfy({ $0.count == n * w }),
                  e.lastInputs.allSatisfy({ $0.count == shape.hidden }) else {
                throw ReferenceIndexError.badArgument("stored state of row \(count): shapes disagree with layers \(shape.fromLayer) up, \(shape.layers) layers of \(n) × \(w) keys and values and \(shape.hidden) inputs")
            }
            var block: [UInt16] = []
            block.reserveCapacity(2 * shape.layers * n * w)
            for l in 0..<shape.layers {
                block += e.keys[l].map { Float16($0).bitPattern }
                block += e.values[l].map { Float16($0).bitPattern }
            }
            let last = Array(e.lastInputs.joined())
            let sum = block.withUnsafeBytes { b in last.withUnsafeBytes { Checksum64.hash($0, seed: Checksum64.hash(b)) } }
            try rows.append(integers: [tokenCount, n, Int(Int64(bitPattern: sum))])
            try tokens.append(integers: e.tokens)
            try block.withUnsafeBytes { try kv.append(raw: $0, count: block.count) }
            try inputs.append(last)
            tokenCount += n
            withState += 1
        }

        /// Closes the files; the manifest's `states` entry.
        public func finish() throws -> IndexManifest.States {
            try rows.finish(shape: [count, 3])
            try tokens.finish(shape: [tokenCount])
            try kv.finish(shape: [tokenCount * shape.layers * 2 * shape.keyValueWidth])
            try inputs.finish(shape: [count, shape.layers, shape.hidden])
            var s = shape
            s.references = withState
            s.tokens = tokenCount
            return s
        }
    }

    /// The stored states of a loaded index, mapped: a reference's state is read when asked for.
    public final class Reader: @unchecked Sendable {
        public let shape: IndexManifest.States
        let rows: NPY.Mapped, tokens: NPY.Mapped, kv: NPY.Mapped, inputs: NPY.Mapped
        public let count: Int

        /// Opens the files of `directory` and checks their shapes against `shape` and `count`.
        public init(directory: URL, shape: IndexManifest.States, count: Int) throws {
            self.shape = shape; self.count = count
            let manifestURL = directory.appendingPathComponent(IndexFolder.manifestFile)
            guard shape.fromLayer >= 0, shape.layers > 0, shape.keyValueWidth > 0, shape.hidden > 0, shape.tokens >= 0 else {
                throw ReferenceIndexError.invalid(manifestURL, "field 'states': from_layer, layers, kv_width, hidden must be positive (from_layer ≥ 0)")
            }
            func open(_ name: String, _ want: [Int]) throws -> NPY.Mapped {
                let url = directory.appendingPathComponent(name)
                guard FileManager.default.fileExists(atPath: url.path) else { throw ReferenceIndexError.missingFile(url) }
                let m = try NPY.Mapped(url: url)
                guard m.header.shape == want else {
                    throw ReferenceIndexError.invalid(url, "shape \(m.header.shape), expected \(want) (manifest 'count', 'states')")
                }
                return m
            }
            let (kvCount, over) = shape.tokens.multipliedReportingOverflow(by: shape.layers * 2 * shape.keyValueWidth)
            guard !over else { throw ReferenceIndexError.invalid(manifestURL, "field 'states.tokens' \(shape.tokens) is too large") }
            rows = try open(rowsFile, [count, 3])
            tokens = try open(tokensFile, [shape.tokens])
            kv = try open(kvFile, [kvCount])
            inputs = try open(inputsFile, [count, shape.layers, shape.hidden])
            guard rows.header.dtype == .int64, tokens.header.dtype == .int64, kv.header.dtype == .float16 else {
                throw ReferenceIndexError.invalid(directory.appendingPathComponent(rowsFile), "states_rows and states_tokens must be int64, states_kv float16")
            }
        }

        /// The state of `row`; nil when it has none. Offsets outside the files are refused by name.
        public func entry(_ row: Int) throws -> TailSnapshot? {
            guard (0..<count).contains(row) else { throw ReferenceIndexError.badArgument("stored states: row \(row) outside 0..<\(count)") }
            let r = try rows.integers(3 * row, 3), first = r[0], n = r[1]
            guard n > 0 else { return nil }
            guard first >= 0, first <= shape.tokens, n <= shape.tokens - first else {
                throw ReferenceIndexError.invalid(rows.url, "row \(row): tokens \(first)..<\(first &+ n) outside the \(shape.tokens) stored")
            }
            let w = shape.keyValueWidth, block = n * w, start = first * shape.layers * 2 * w
            let inputStart = row * shape.layers * shape.hidden, inputCount = shape.layers * shape.hidden
            let sum = Checksum64.hash(try inputs.bytes(inputStart, inputCount), seed: Checksum64.hash(try kv.bytes(start, 2 * shape.layers * block)))
            guard Int64(bitPattern: sum) == Int64(r[2]) else {
                throw ReferenceIndexError.invalid(kv.url, "the stored state of row \(row) does not match its checksum in \(rowsFile) (edited or damaged; c3po-index verify checks the whole folder)")
            }
            var keys: [[Float]] = [], values: [[Float]] = []
            var at = start
            for _ in 0..<shape.layers {
                keys.append(try kv.floats(at, block)); at += block
                values.append(try kv.floats(at, block)); at += block
            }
            let flat = try inputs.floats(inputStart, inputCount)
            let lastInputs = (0..<shape.layers).map { Array(flat[($0 * shape.hidden)..<(($0 + 1) * shape.hidden)]) }
            return TailSnapshot(tokens: try tokens.integers(first, n), fromLayer: shape.fromLayer, keys: keys, values: values, lastInputs: lastInputs)
        }
    }
}

/// Writes an index's stored states (`c3po-index build --cache-states`): C3POMixing's recorder,
/// which runs the model over each record's prompt. Given to `IndexWriter.write`.
public protocol IndexStateRecorder {
    /// The states of `records`, in row order, from layer `fromLayer` up, written into `folder`.
    func writeStates(of records: [ReferenceRecord], fromLayer: Int, into folder: URL) throws -> IndexManifest.States
}
