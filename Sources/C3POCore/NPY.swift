import Foundation

/// NumPy `.npy` files (format version 1.0), little-endian, C order: the interchange
/// format with Python for embeddings and pathways.
public enum NPY {
    public enum DType: String, Sendable {
        case float32 = "<f4"
        case float16 = "<f2"
        case int64 = "<i8"

        var size: Int { self == .float32 ? 4 : self == .float16 ? 2 : 8 }
    }

    public struct Header: Equatable, Sendable {
        public var dtype: DType
        public var shape: [Int]
        /// The number of values; nil when it does not fit an Int (a hostile shape).
        public var checkedCount: Int? {
            var n = 1
            for d in shape {
                let (p, overflow) = n.multipliedReportingOverflow(by: d)
                if overflow { return nil }
                n = p
            }
            return n
        }
        public var count: Int { checkedCount ?? Int.max }
    }

    public enum Error: Swift.Error, CustomStringConvertible {
        case malformed(URL, String)
        case shapeMismatch(String)

        public var description: String {
            switch self {
            case let .malformed(url, why): return "\(url.path): not a valid .npy file: \(why)"
            case let .shapeMismatch(why): return "npy: \(why)"
            }
        }
    }

    // MARK: writing

    public static func encode(float32 values: [Float], shape: [Int]) throws -> Data {
        guard shape.reduce(1, *) == values.count else {
            throw Error.shapeMismatch("shape \(shape) holds \(shape.reduce(1, *)) values, got \(values.count)")
        }
        var data = headerData(.float32, shape)
        values.withUnsafeBufferPointer { data.append(UnsafeBufferPointer(start: $0.baseAddress, count: $0.count)) }
        return data
    }

    public static func encode(float16 values: [Float], shape: [Int]) throws -> Data {
        guard shape.reduce(1, *) == values.count else {
            throw Error.shapeMismatch("shape \(shape) holds \(shape.reduce(1, *)) values, got \(values.count)")
        }
        var data = headerData(.float16, shape)
        let halves = values.map { Float16($0).bitPattern }
        halves.withUnsafeBufferPointer { data.append(UnsafeBufferPointer(start: $0.baseAddress, count: $0.count)) }
        return data
    }

    /// Writes float32 values atomically (temporary sibling, then rename).
    public static func write(float32 values: [Float], shape: [Int], to url: URL) throws {
        try AtomicWrite.write(encode(float32: values, shape: shape), to: url)
    }

    public static func write(float16 values: [Float], shape: [Int], to url: URL) throws {
        try AtomicWrite.write(encode(float16: values, shape: shape), to: url)
    }

    /// The header for `shape`, padded to a multiple of 64 bytes, or to `length` when given (it
    /// must be a multiple of 64 with room for the dict).
    static func headerData(_ dtype: DType, _ shape: [Int], length: Int? = nil) -> Data {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(dtype.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
        // magic (6) + version (2) + length (2) + dict + '\n' is padded to a multiple of 64.
        let unpadded = 10 + dict.utf8.count + 1
        let pad = length.map { max(0, $0 - unpadded) } ?? (64 - unpadded % 64) % 64
        dict += String(repeating: " ", count: pad) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let len = UInt16(dict.utf8.count)
        data.append(contentsOf: [UInt8(len & 0xff), UInt8(len >> 8)])
        data.append(contentsOf: Array(dict.utf8))
        return data
    }

    // MARK: reading

    /// Reads an `.npy` of float32 or float16 values, returned as Float.
    public static func readFloats(_ url: URL) throws -> (header: Header, values: [Float]) {
        let file = try MappedFile(url: url)
        return try decodeFloats(file.bytes, url: url)
    }

    /// The values of an `.npy` held in `bytes` (`url` names it in messages).
    public static func decodeFloats(_ bytes: UnsafeRawBufferPointer, url: URL) throws -> (header: Header, values: [Float]) {
        let (header, offset) = try parseHeader(bytes, url: url)
        let n = try checkDataSize(header, available: bytes.count - offset, url: url)
        var out = [Float](repeating: 0, count: n)
        guard n > 0, let base = bytes.baseAddress else { return (header, out) }
        let src = base + offset
        switch header.dtype {
        case .float32:
            out.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: src, count: n * 4)) }
        case .float16:
            for i in 0..<n { out[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .int64:
            throw Error.malformed(url, "expected float32 or float16 values, found int64")
        }
        return (header, out)
    }

    /// The number of values, when the `available` bytes after the header are exactly what the
    /// header's shape and dtype need.
    static func checkDataSize(_ header: Header, available: Int, url: URL) throws -> Int {
        guard let n = header.checkedCount, case let (size, overflow) = n.multipliedReportingOverflow(by: header.dtype.size), !overflow,
              available == size else {
            throw Error.malformed(url, "data holds \(available) bytes, shape \(header.shape) of \(header.dtype.rawValue) needs \(header.checkedCount.map { "\($0) values of \(header.dtype.size) bytes" } ?? "more values than can be addressed")")
        }
        return n
    }

    public static func parseHeader(_ bytes: UnsafeRawBufferPointer, url: URL) throws -> (Header, Int) {
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else {
            throw Error.malformed(url, "missing \\x93NUMPY magic")
        }
        let major = bytes[6]
        let lenBytes: Int
        let headerLen: Int
        if major == 1 {
            lenBytes = 2
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8
        } else if major == 2 || major == 3 {
            guard bytes.count >= 12 else { throw Error.malformed(url, "truncated header") }
            lenBytes = 4
            headerLen = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
        } else {
            throw Error.malformed(url, "unsupported format version \(major)")
        }
        let start = 8 + lenBytes
        guard start + headerLen <= bytes.count else { throw Error.malformed(url, "truncated header") }
        guard let dict = String(bytes: bytes[start..<(start + headerLen)], encoding: .utf8) else {
            throw Error.malformed(url, "header is not text")
        }
        func field(_ key: String) -> Substring? {
            guard let r = dict.range(of: "'\(key)':") else { return nil }
            return dict[r.upperBound...].drop(while: { $0 == " " })
        }
        guard let descrField = field("descr"), descrField.first == "'",
              let descrEnd = descrField.dropFirst().firstIndex(of: "'") else {
            throw Error.malformed(url, "no 'descr' in header")
        }
        let descr = String(descrField[descrField.index(after: descrField.startIndex)..<descrEnd])
        guard let dtype = DType(rawValue: descr == "|f2" ? "<f2" : descr) else {
            throw Error.malformed(url, "unsupported dtype \(descr) (need <f4, <f2 or <i8)")
        }
        if let fortran = field("fortran_order"), fortran.hasPrefix("True") {
            throw Error.malformed(url, "Fortran-order arrays are not supported")
        }
        guard let shapeField = field("shape"), shapeField.first == "(", let close = shapeField.firstIndex(of: ")") else {
            throw Error.malformed(url, "no 'shape' in header")
        }
        let inner = shapeField[shapeField.index(after: shapeField.startIndex)..<close]
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let v = Int(t), v >= 0 else { throw Error.malformed(url, "bad shape entry '\(t)'") }
            shape.append(v)
        }
        return (Header(dtype: dtype, shape: shape), start + headerLen)
    }
}
