import Foundation

/// A memory-mapped `.safetensors` file. The header is validated once, up front:
/// every tensor's dtype is known, its byte range lies inside the data region,
/// matches shape × element size, and overlaps no other tensor. Tensor data is
/// never copied on load; callers convert the tiles they need.
public final class SafetensorsFile: @unchecked Sendable {
    public enum DType: String, Sendable, CaseIterable {
        case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL
        public var size: Int {
            switch self {
            case .F64, .I64: return 8
            case .F32, .I32: return 4
            case .F16, .BF16, .I16: return 2
            case .I8, .U8, .BOOL: return 1
            }
        }
    }

    public struct Tensor: @unchecked Sendable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        /// Start of the tensor's bytes inside the mapping.
        public let data: UnsafeRawPointer
        public let byteCount: Int
        public var count: Int { shape.reduce(1, *) }

        /// Converts elements `start ..< start + n` to Float into `dst` (F32, F16, BF16).
        public func copyFloats(from start: Int = 0, count n: Int, into dst: UnsafeMutablePointer<Float>) {
            precondition(start >= 0 && start + n <= count, "tensor \(name): range out of bounds")
            switch dtype {
            case .F32:
                UnsafeMutableRawPointer(dst).copyMemory(from: data + 4 * start, byteCount: 4 * n)
            case .BF16:
                HalfPrecision.convertBF16(data + 2 * start, to: dst, count: n)
            case .F16:
                HalfPrecision.convertF16(data + 2 * start, to: dst, count: n)
            default:
                preconditionFailure("tensor \(name): \(dtype) is not a float type")
            }
        }

        /// The whole tensor as Float (for small tensors: norms, biases, embeddings of small models).
        public func floats() -> [Float] {
            [Float](unsafeUninitializedCapacity: count) { buf, initialized in
                if let base = buf.baseAddress { copyFloats(count: count, into: base) }
                initialized = count
            }
        }

        public var isFloat: Bool { dtype == .F32 || dtype == .F16 || dtype == .BF16 }
    }

    public enum Error: Swift.Error, CustomStringConvertible {
        case malformed(URL, String)
        case badTensor(URL, String, String)
        case missingTensor(URL, String)

        public var description: String {
            switch self {
            case let .malformed(url, why): return "\(url.path): malformed safetensors file: \(why)"
            case let .badTensor(url, name, why): return "\(url.path): tensor '\(name)': \(why)"
            case let .missingTensor(url, name): return "\(url.path): no tensor named '\(name)'"
            }
        }
    }

    /// The largest JSON header read (the safetensors reference implementation's limit, 100 MB).
    public static let maxHeaderBytes = 100_000_000
    /// The largest `model.safetensors.index.json` read (a real 100B-parameter model's is under 1 MB).
    public static let maxIndexBytes = 64 << 20

    public let url: URL
    public let tensors: [String: Tensor]
    public let metadata: [String: String]
    private let file: MappedFile

    public init(url: URL) throws {
        self.url = url
        file = try MappedFile(url: url)
        let bytes = file.bytes
        guard bytes.count >= 8 else { throw Error.malformed(url, "file of \(bytes.count) bytes has no header length") }
        let headerLen = bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLen <= UInt64(bytes.count - 8) else {
            throw Error.malformed(url, "header length \(headerLen) exceeds the file (\(bytes.count) bytes)")
        }
        // The header is parsed in memory: capped as the format's reference reader caps it.
        guard headerLen <= UInt64(Self.maxHeaderBytes) else {
            throw Error.malformed(url, "header length \(headerLen) exceeds the limit of \(Self.maxHeaderBytes) bytes")
        }
        let dataStart = 8 + Int(headerLen)
        let dataSize = bytes.count - dataStart
        let headerData = Data(bytes[8..<dataStart])
        guard let json = try? JSONSerialization.jsonObject(with: headerData), let dict = json as? [String: Any] else {
            throw Error.malformed(url, "header is not a JSON object")
        }
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        var ranges: [(Int, Int, String)] = []
        for (name, value) in dict {
            if name == "__metadata__" {
                if let m = value as? [String: Any] { for (k, v) in m { metadata[k] = "\(v)" } }
                continue
            }
            guard let entry = value as? [String: Any] else { throw Error.badTensor(url, name, "entry is not an object") }
            guard let dtypeName = entry["dtype"] as? String else { throw Error.badTensor(url, name, "no dtype") }
            guard let dtype = DType(rawValue: dtypeName) else { throw Error.badTensor(url, name, "unknown dtype \(dtypeName)") }
            guard let shapeAny = entry["shape"] as? [Any] else { throw Error.badTensor(url, name, "no shape") }
            var shape: [Int] = []
            for s in shapeAny {
                guard let n = (s as? NSNumber)?.intValue, n >= 0 else { throw Error.badTensor(url, name, "bad shape \(shapeAny)") }
                shape.append(n)
            }
            guard let offs = entry["data_offsets"] as? [Any], offs.count == 2,
                  let begin = (offs[0] as? NSNumber)?.intValue, let end = (offs[1] as? NSNumber)?.intValue else {
                throw Error.badTensor(url, name, "no data_offsets [begin, end]")
            }
            guard begin >= 0, end >= begin, end <= dataSize else {
                throw Error.badTensor(url, name, "data_offsets [\(begin), \(end)] outside the data region of \(dataSize) bytes")
            }
            let (elements, overflow) = shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d); return (p, acc.1 || o)
            }
            guard !overflow, elements * dtype.size == end - begin else {
                throw Error.badTensor(url, name, "shape \(shape) of \(dtype) needs \(overflow ? -1 : elements * dtype.size) bytes, data_offsets give \(end - begin)")
            }
            ranges.append((begin, end, name))
            tensors[name] = Tensor(name: name, dtype: dtype, shape: shape, data: file.base + dataStart + begin, byteCount: end - begin)
        }
        ranges.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        for i in ranges.indices.dropFirst() where ranges[i].0 < ranges[i - 1].1 {
            throw Error.badTensor(url, ranges[i].2, "data overlaps tensor '\(ranges[i - 1].2)'")
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else { throw Error.missingTensor(url, name) }
        return t
    }
}

/// A checkpoint folder: `model.safetensors`, or shards listed in
/// `model.safetensors.index.json` (`weight_map`: tensor name → shard file).
public final class SafetensorsCheckpoint: @unchecked Sendable {
    public let directory: URL
    public let files: [SafetensorsFile]
    public let tensors: [String: SafetensorsFile.Tensor]

    public init(directory: URL) throws {
        self.directory = directory
        let fm = FileManager.default
        let single = directory.appendingPathComponent("model.safetensors")
        let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
        var files: [SafetensorsFile] = []
        if fm.fileExists(atPath: indexURL.path) {
            let mapped = try MappedFile(url: indexURL)
            guard mapped.bytes.count <= SafetensorsFile.maxIndexBytes else {
                throw SafetensorsFile.Error.malformed(indexURL, "\(mapped.bytes.count) bytes exceed the limit of \(SafetensorsFile.maxIndexBytes) for a shard index")
            }
            let data = Data(mapped.bytes)
            guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let map = obj["weight_map"] as? [String: String] else {
                throw SafetensorsFile.Error.malformed(indexURL, "no weight_map object")
            }
            for shard in Set(map.values).sorted() {
                guard !shard.contains("/") else { throw SafetensorsFile.Error.malformed(indexURL, "shard name '\(shard)' has a path") }
                files.append(try SafetensorsFile(url: directory.appendingPathComponent(shard)))
            }
            var all: [String: SafetensorsFile.Tensor] = [:]
            for f in files { for (k, v) in f.tensors { all[k] = v } }
            for (name, shard) in map where all[name] == nil {
                throw SafetensorsFile.Error.malformed(indexURL, "weight_map names '\(name)' in \(shard), which does not hold it")
            }
            tensors = all
        } else if fm.fileExists(atPath: single.path) {
            files = [try SafetensorsFile(url: single)]
            tensors = files[0].tensors
        } else {
            throw FileError.missing(directory, "model.safetensors (or model.safetensors.index.json)")
        }
        self.files = files
    }

    public func tensor(_ name: String, shape: [Int]? = nil) throws -> SafetensorsFile.Tensor {
        guard let t = tensors[name] else { throw SafetensorsFile.Error.missingTensor(directory, name) }
        if let shape, t.shape != shape {
            throw SafetensorsFile.Error.badTensor(directory, name, "shape \(t.shape), expected \(shape)")
        }
        guard t.isFloat else { throw SafetensorsFile.Error.badTensor(directory, name, "dtype \(t.dtype), expected F32, F16 or BF16") }
        return t
    }
}
