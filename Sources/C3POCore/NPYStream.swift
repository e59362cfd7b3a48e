import Foundation

extension NPY {
    /// An `.npy` written as its values come, for arrays too large to hold: the header's room is
    /// kept at the front and filled in by `finish`, once the shape is known.
    public final class Writer {
        public let url: URL
        public let dtype: DType
        public private(set) var count = 0
        private let handle: FileHandle
        /// Room for the header: magic, version, length and a dict of any shape of up to 4 dimensions.
        static let headerRoom = 128

        public init(url: URL, dtype: DType) throws {
            self.url = url; self.dtype = dtype
            guard FileManager.default.createFile(atPath: url.path, contents: Data(count: Self.headerRoom)) else {
                throw FileError.cannotWrite(url, "cannot create the file")
            }
            handle = try FileHandle(forWritingTo: url)
            try handle.seekToEnd()
        }

        /// Appends bytes already in the file's dtype (`count` values of it).
        public func append(raw: UnsafeRawBufferPointer, count n: Int) throws {
            guard raw.count == n * dtype.size else { throw Error.shapeMismatch("\(url.lastPathComponent): \(raw.count) bytes are not \(n) values") }
            try handle.write(contentsOf: raw)
            count += n
        }

        /// Appends values, converted to the file's dtype (float32 or float16).
        public func append(_ values: UnsafeBufferPointer<Float>) throws {
            switch dtype {
            case .float32: try handle.write(contentsOf: UnsafeRawBufferPointer(values))
            case .float16:
                let halves = values.map { Float16($0).bitPattern }
                try halves.withUnsafeBytes { try handle.write(contentsOf: $0) }
            case .int64: throw Error.shapeMismatch("\(url.lastPathComponent): an int64 file takes integers")
            }
            count += values.count
        }

        public func append(_ values: [Float]) throws { try values.withUnsafeBufferPointer { try append($0) } }

        public func append(integers values: [Int]) throws {
            guard dtype == .int64 else { throw Error.shapeMismatch("\(url.lastPathComponent): a float file takes floats") }
            let le = values.map { Int64($0).littleEndian }
            try le.withUnsafeBytes { try handle.write(contentsOf: $0) }
            count += values.count
        }

        /// Writes the header for `shape` (which must hold the values appended) and closes the file.
        public func finish(shape: [Int]) throws {
            guard shape.reduce(1, *) == count else {
                throw Error.shapeMismatch("\(url.lastPathComponent): shape \(shape) holds \(shape.reduce(1, *)) values, \(count) were written")
            }
            let header = NPY.headerData(dtype, shape, length: Self.headerRoom)
            try handle.seek(toOffset: 0)
            try handle.write(contentsOf: header)
            try handle.synchronize()
            try handle.close()
        }
    }

    /// An `.npy` mapped, not read: the header checked against the file's size at once, the
    /// values read where they are needed.
    public final class Mapped: @unchecked Sendable {
        public let url: URL
        public let header: Header
        private let file: MappedFile
        private let offset: Int

        public init(url: URL) throws {
            self.url = url
            file = try MappedFile(url: url)
            (header, offset) = try NPY.parseHeader(file.bytes, url: url)
            _ = try NPY.checkDataSize(header, available: file.count - offset, url: url)
        }

        public var count: Int { header.count }

        private func check(_ start: Int, _ n: Int) throws {
            guard start >= 0, n >= 0, start <= count, n <= count - start else {
                throw Error.malformed(url, "values \(start)..<\(start &+ n) lie outside the \(count) it holds")
            }
        }

        /// The stored bytes of values start..<start+n, as they are in the file.
        public func bytes(_ start: Int, _ n: Int) throws -> UnsafeRawBufferPointer {
            try check(start, n)
            return UnsafeRawBufferPointer(start: file.base + offset + start * header.dtype.size, count: n * header.dtype.size)
        }

        /// Values start..<start+n as Float (float32 or float16 files).
        public func floats(_ start: Int, _ n: Int) throws -> [Float] {
            try check(start, n)
            let src = file.base + offset + start * header.dtype.size
            var out = [Float](repeating: 0, count: n)
            switch header.dtype {
            case .float32: out.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: src, count: n * 4)) }
            case .float16: out.withUnsafeMutableBufferPointer { HalfPrecision.convertF16(src, to: $0.baseAddress!, count: n) }
            case .int64: throw Error.malformed(url, "expected float32 or float16 values, found int64")
            }
            return out
        }

        /// Values start..<start+n of an int64 file.
        public func integers(_ start: Int, _ n: Int) throws -> [Int] {
            try check(start, n)
            guard header.dtype == .int64 else { throw Error.malformed(url, "expected int64 values, found \(header.dtype.rawValue)") }
            let src = file.base + offset + start * 8
            return (0..<n).map { Int(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
        }
    }
}
