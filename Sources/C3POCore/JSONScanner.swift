import Foundation

/// A strict JSON (RFC 8259) parser over bytes, with a pull API and an optional value tree.
///
/// Why our own: Foundation's `JSONSerialization`/`JSONDecoder` on Linux parse about
/// 5 MB/s on the official C3PO routing-record files (25 MB per 1,000 records, 16×64
/// weights each), which made `c3po-index build` spend minutes in parsing. This scanner
/// works on the bytes in place and lets a caller stream an object's members straight
/// into its own buffers (e.g. `routing_weights` → a dense [layers, experts] matrix)
/// without building dictionaries; `readValue()` builds a `JSONValue` tree where one is
/// convenient.
///
/// Grammar: RFC 8259 exactly (UTF-8 text, whitespace = space, tab, LF, CR; no comments,
/// no trailing commas, no leading zeros, no byte order mark), with these documented choices:
/// - **Non-finite numbers**: the bare tokens `NaN`, `Infinity` and `-Infinity` that
///   Python's `json.dump` writes for non-finite floats (its default `allow_nan=True`,
///   read back by `json.loads`) are accepted as numbers, so that callers can report
///   such a value as "not finite" rather than the whole file as malformed.
/// - **Lone surrogates**: an escape `\uD800`..`\uDFFF` that is not part of a valid
///   high+low pair is accepted (as Python's `json.loads` does) but decoded as U+FFFD,
///   because a Swift `String` holds only Unicode scalars. Raw bytes that are not valid
///   UTF-8 are an error (Python refuses them when decoding the file).
/// - **Nesting** deeper than `maxDepth` (512) arrays/objects is an error (Python stops
///   at its recursion limit, about 1,000, with a `RecursionError`).
/// - **Numbers** are read as `Double`, correctly rounded: a fast exact path (Clinger:
///   at most 19 significant digits, mantissa ≤ 2^53, |power of ten| ≤ 22) and Swift's
///   locale-independent `Double(String)` (strtod semantics) otherwise. Magnitudes beyond
///   `Double` become ±infinity, as in Python. Integers without fraction or exponent that
///   fit `Int64` are kept exact in the tree (`.integer`).
/// - **Duplicate keys** are kept in the tree in document order; `JSONValue[key]` returns
///   the last, as Python's `dict` does.
///
/// Errors carry the byte offset, line and column (1-based; column counts bytes).
public struct JSONScanner {
    /// Deepest allowed nesting of arrays and objects.
    public static let maxDepth = 512

    public enum Kind: Sendable, Equatable, CustomStringConvertible {
        case object, array, string, number, bool, null
        public var description: String {
            switch self {
            case .object: return "an object"
            case .array: return "an array"
            case .string: return "a string"
            case .number: return "a number"
            case .bool: return "a boolean"
            case .null: return "null"
            }
        }
    }

    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public let message: String
        /// Byte offset of the offending byte (or of the end of input).
        public let offset: Int
        /// 1-based line and byte column of `offset`.
        public let line: Int
        public let column: Int
        public var description: String { "\(message) at line \(line), column \(column) (byte offset \(offset))" }
    }

    /// Comma bookkeeping of one open object or array (see `nextKey` / `nextElement`).
    public struct Container {
        fileprivate var first = true
    }

    /// An object key as it stands in the document (the bytes between the quotes);
    /// escapes are decoded only when `string` is asked for. Valid while the scanned
    /// buffer is.
    public struct Key {
        public let raw: UnsafeRawBufferPointer
        /// Whether `raw` contains backslash escapes.
        public let hasEscapes: Bool

        /// Compares with an ASCII/UTF-8 literal without allocating (escaped keys are decoded first).
        public func equals(_ literal: StaticString) -> Bool {
            if hasEscapes { return string == literal.description }
            guard raw.count == literal.utf8CodeUnitCount else { return false }
            return raw.count == 0 || memcmp(raw.baseAddress!, literal.utf8Start, raw.count) == 0
        }

        /// The decoded key.
        public var string: String { JSONScanner.decodeString(raw, hasEscapes: hasEscapes) }
    }

    private let p: UnsafeRawBufferPointer
    /// Current byte offset.
    public private(set) var offset = 0
    private var depth = 0

    /// Scans `bytes`, which must stay valid while the scanner (and its `Key`s) are used.
    public init(_ bytes: UnsafeRawBufferPointer) {
        p = bytes
    }

    /// Parses a whole document into a tree (trailing non-whitespace is an error).
    public static func parse(_ data: Data) throws -> JSONValue {
        try data.withUnsafeBytes { raw in
            var s = JSONScanner(raw)
            let v = try s.readValue()
            try s.finish()
            return v
        }
    }

    // MARK: errors

    /// An error at `at` (default: the current offset) with its line and column.
    public func error(_ message: String, at: Int? = nil) -> Error {
        let o = min(at ?? offset, p.count)
        var line = 1, lineStart = 0
        for i in 0..<o where p[i] == 0x0A { line += 1; lineStart = i + 1 }
        return Error(message: message, offset: o, line: line, column: o - lineStart + 1)
    }

    private func unexpected(_ what: String) -> Error {
        guard offset < p.count else { return error("unexpected end of input, expected \(what)") }
        let b = p[offset]
        if offset == 0 && b == 0xEF { return error("UTF-8 byte order mark before the JSON text") }
        let shown = (0x20..<0x7F).contains(b) ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x" + String(b, radix: 16, uppercase: true)
        return error("unexpected \(shown), expected \(what)")
    }

    // MARK: structure

    @inline(__always)
    private mutating func skipWhitespace() {
        while offset < p.count {
            let b = p[offset]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            offset += 1
        }
    }

    /// The kind of the next value (skips whitespace; consumes nothing else).
    public mutating func peek() throws -> Kind {
        skipWhitespace()
        guard offset < p.count else { throw unexpected("a value") }
        switch p[offset] {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "N"), UInt8(ascii: "I"): return .number
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        default: throw unexpected("a value")
        }
    }

    /// Checks that only whitespace follows the top-level value.
    public mutating func finish() throws {
        skipWhitespace()
        guard offset == p.count else { throw unexpected("end of input after the top-level value") }
    }

    private mutating func open(_ kind: Kind) throws {
        guard try peek() == kind else { throw unexpected(kind.description) }
        depth += 1
        guard depth <= Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth) arrays/objects") }
        offset += 1
    }

    /// Consumes `{`. Then: `var c = try s.beginObject(); while let key = try s.nextKey(&c) { read or skip exactly one value }`.
    public mutating func beginObject() throws -> Container {
        try open(.object)
        return Container()
    }

    /// The next member's key (its `:` consumed), or nil after consuming the closing `}`.
    public mutating func nextKey(_ c: inout Container) throws -> Key? {
        skipWhitespace()
        guard offset < p.count else { throw unexpected("'\"' or '}'") }
        if p[offset] == UInt8(ascii: "}") {
            offset += 1; depth -= 1
            return nil
        }
        if !c.first {
            guard p[offset] == UInt8(ascii: ",") else { throw unexpected("',' or '}'") }
            offset += 1
            skipWhitespace()
        }
        guard offset < p.count, p[offset] == UInt8(ascii: "\"") else { throw unexpected("a key (a string)") }
        c.first = false
        let (start, end, escaped) = try scanString()
        skipWhitespace()
        guard offset < p.count, p[offset] == UInt8(ascii: ":") else { throw unexpected("':'") }
        offset += 1
        return Key(raw: UnsafeRawBufferPointer(rebasing: p[start..<end]), hasEscapes: escaped)
    }

    /// Consumes `[`. Then: `var c = try s.beginArray(); while try s.nextElement(&c) { read or skip exactly one value }`.
    public mutating func beginArray() throws -> Container {
        try open(.array)
        return Container()
    }

    /// Whether another element follows (its `,` consumed); false after consuming `]`.
    public mutating func nextElement(_ c: inout Container) throws -> Bool {
        skipWhitespace()
        guard offset < p.count else { throw unexpected("a value or ']'") }
        if p[offset] == UInt8(ascii: "]") {
            offset += 1; depth -= 1
            return false
        }
        if !c.first {
            guard p[offset] == UInt8(ascii: ",") else { throw unexpected("',' or ']'") }
            offset += 1
            skipWhitespace()
            // `[1,]`: a value must follow the comma.
            if offset < p.count && p[offset] == UInt8(ascii: "]") { throw unexpected("a value") }
        }
        c.first = false
        return true
    }

    // MARK: scalars

    /// Reads a string value.
    public mutating func readString() throws -> String {
        guard try peek() == .string else { throw unexpected("a string") }
        let (start, end, escaped) = try scanString()
        return Self.decodeString(UnsafeRawBufferPointer(rebasing: p[start..<end]), hasEscapes: escaped)
    }

    /// Reads a number (including the `NaN`/`Infinity`/`-Infinity` extension).
    public mutating func readDouble() throws -> Double {
        guard try peek() == .number else { throw unexpected("a number") }
        return try scanNumber().value
    }

    public mutating func readBool() throws -> Bool {
        guard try peek() == .bool else { throw unexpected("true or false") }
        if try literal("true") { return true }
        if try literal("false") { return false }
        throw unexpected("true or false")
    }

    public mutating func readNull() throws {
        guard try peek() == .null, try literal("null") else { throw unexpected("null") }
    }

    /// Skips one value of any kind, validating it fully.
    public mutating func skipValue() throws {
        switch try peek() {
        case .object:
            var c = try beginObject()
            while try nextKey(&c) != nil { try skipValue() }
        case .array:
            var c = try beginArray()
            while try nextElement(&c) { try skipValue() }
        case .string:
                _ = try scanString()
        case .number:
                _ = try scanNumber()
        case .bool: _ = try readBool()
        case .null: try readNull()
        }
    }

    /// Reads one value as a tree.
    public mutating func readValue() throws -> JSONValue {
        let v: JSONValue
        switch try peek() {
        case .object:
            var members: [(key: String, value: JSONValue)] = []
            var c = try beginObject()
            while let k = try nextKey(&c) { members.append((k.string, try readValue())) }
            v = .object(members)
        case .array:
            var items: [JSONValue] = []
            var c = try beginArray()
            while try nextElement(&c) { items.append(try readValue()) }
            v = .array(items)
        case .string: v = .string(try readString())
        case .number:
                let n = try scanNumber()
            v = n.integer.map { .integer($0) } ?? .double(n.value)
        case .bool: v = .bool(try readBool())
        case .null: try readNull(); v = .null
        }
        return v
    }

    private mutating func literal(_ word: StaticString) throws -> Bool {
        let n = word.utf8CodeUnitCount
        guard offset + n <= p.count, memcmp(p.baseAddress! + offset, word.utf8Start, n) == 0 else { return false }
        offset += n
        return true
    }

    // MARK: strings

    /// Scans a string at `"`; returns the content's byte range and whether it holds escapes.
    /// Validates escapes, control characters and UTF-8 on the way.
    private mutating func scanString() throws -> (Int, Int, Bool) {
        let start = offset + 1
        var i = start
        var escaped = false
        let n = p.count
        while i < n {
            let b = p[i]
            if b == UInt8(ascii: "\"") {
                offset = i + 1
                return (start, i, escaped)
            } else if b == UInt8(ascii: "\\") {
                escaped = true
                guard i + 1 < n else { break }
                switch p[i + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                     UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    i += 2
                case UInt8(ascii: "u"):
                    guard i + 6 <= n else { offset = n; throw error("unterminated string") }
                    for j in (i + 2)..<(i + 6) where Self.hexValue(p[j]) == nil {
                        throw error("invalid \\u escape (4 hex digits expected)", at: i)
                    }
                    i += 6
                default:
                    throw error("invalid escape '\\\(Character(Unicode.Scalar(p[i + 1])))' in string", at: i)
                }
            } else if b < 0x20 {
                throw error("control character 0x" + String(b, radix: 16, uppercase: true) + " in string (must be escaped)", at: i)
            } else if b < 0x80 {
                i += 1
            } else {
                let len = Self.utf8SequenceLength(p, at: i)
                guard len > 0 else { throw error("invalid UTF-8 in string", at: i) }
                i += len
            }
        }
        offset = n
        throw error("unterminated string")
    }

    /// Length of the valid UTF-8 sequence starting at `i` (lead byte ≥ 0x80), 0 if invalid
    /// (overlong forms, surrogates and values above U+10FFFF are invalid; RFC 3629 table).
    private static func utf8SequenceLength(_ p: UnsafeRawBufferPointer, at i: Int) -> Int {
        let b0 = p[i]
        func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
            i + k < p.count && (lo...hi).contains(p[i + k])
        }
        switch b0 {
        case 0xC2...0xDF: return cont(1) ? 2 : 0
        case 0xE0: return cont(1, 0xA0, 0xBF) && cont(2) ? 3 : 0
        case 0xE1...0xEC, 0xEE...0xEF: return cont(1) && cont(2) ? 3 : 0
        case 0xED: return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0
        case 0xF0: return cont(1, 0x90, 0xBF) && cont(2) && cont(3) ? 4 : 0
        case 0xF1...0xF3: return cont(1) && cont(2) && cont(3) ? 4 : 0
        case 0xF4: return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0
        default: return 0
        }
    }

    @inline(__always)
    private static func hexValue(_ b: UInt8) -> UInt32? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(b - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(b - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(b - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    /// Decodes a string's content already validated by `scanString`. Surrogate pairs
    /// combine; lone surrogates become U+FFFD (see the type's documentation).
    static func decodeString(_ raw: UnsafeRawBufferPointer, hasEscapes: Bool) -> String {
        guard hasEscapes else { return String(decoding: raw, as: UTF8.self) }
        var out = [UInt8]()
        out.reserveCapacity(raw.count)
        var i = 0
        func hex4(_ at: Int) -> UInt32 {
            (0..<4).reduce(0) { $0 << 4 | (hexValue(raw[at + $1]) ?? 0) }
        }
        func append(_ scalar: Unicode.Scalar) {
            out.append(contentsOf: UTF8.encode(scalar).map { Array($0) } ?? [])
        }
        while i < raw.count {
            let b = raw[i]
            guard b == UInt8(ascii: "\\") else { out.append(b); i += 1; continue }
            let e = raw[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                let u = hex4(i)
                i += 4
                if (0xD800...0xDBFF).contains(u), i + 6 <= raw.count, raw[i] == UInt8(ascii: "\\"), raw[i + 1] == UInt8(ascii: "u") {
                    let low = hex4(i + 2)
                    if (0xDC00...0xDFFF).contains(low) {
                        i += 6
                        append(Unicode.Scalar(0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)) ?? "\u{FFFD}")
                        continue
                    }
                }
                append(Unicode.Scalar(u) ?? "\u{FFFD}") // a lone surrogate is not a scalar
            default: out.append(e) // \" \\ \/
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: numbers

    struct Number {
        var value: Double
        /// The exact value of an integer literal (no fraction, no exponent) that fits Int64.
        var integer: Int64?
    }

    /// 10^0 ... 10^22: exactly representable as Double (Clinger's fast path).
    private static let exactPowers: [Double] = (0...22).map { pow(10.0, Double($0)) }

    /// Scans a number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, or `NaN`,
    /// `Infinity`, `-Infinity`.
    private mutating func scanNumber() throws -> Number {
        let start = offset
        var i = offset
        let n = p.count
        var negative = false
        if p[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        if i < n && (p[i] == UInt8(ascii: "I") || p[i] == UInt8(ascii: "N")) {
            offset = i
            if try literal("Infinity") { return Number(value: negative ? -.infinity : .infinity) }
            if !negative, try literal("NaN") { return Number(value: .nan) }
            offset = start
            throw error("invalid number")
        }
        var mantissa: UInt64 = 0
        var significant = 0 // significant digits seen (leading zeros excluded)
        var exponent = 0    // power of ten applied to the mantissa
        var isInteger = true
        func digit(_ i: Int) -> UInt8? {
            i < n && p[i] >= UInt8(ascii: "0") && p[i] <= UInt8(ascii: "9") ? p[i] - UInt8(ascii: "0") : nil
        }
        func take(_ d: UInt8, fraction: Bool) {
            if significant < 19 {
                if d != 0 || significant > 0 {
                    mantissa = mantissa &* 10 &+ UInt64(d)
                    significant += 1
                }
                if fraction { exponent -= 1 }
            } else {
                significant += 1 // digits beyond 19 are handled by the slow path
                if !fraction { exponent += 1 }
            }
        }
        guard let first = digit(i) else { offset = i; throw error("invalid number (digit expected)") }
        if first == 0 {
            i += 1
        } else {
            while let d = digit(i) { take(d, fraction: false); i += 1 }
        }
        if i < n && p[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard digit(i) != nil else { offset = i; throw error("invalid number (digit expected after '.')") }
            while let d = digit(i) { take(d, fraction: true); i += 1 }
        }
        if i < n && (p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E")) {
            isInteger = false
            i += 1
            var expNegative = false
            if i < n && (p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "-")) { expNegative = p[i] == UInt8(ascii: "-"); i += 1 }
            guard digit(i) != nil else { offset = i; throw error("invalid number (digit expected in exponent)") }
            var e = 0
            while let d = digit(i) { if e < 1_000_000 { e = e * 10 + Int(d) }; i += 1 }
            exponent += expNegative ? -e : e
        }
        offset = i
        if significant <= 19 && mantissa <= (1 << 53) && abs(exponent) <= 22 {
            // Both operands exact, so one IEEE operation rounds correctly.
            var v = Double(mantissa)
            v = exponent < 0 ? v / Self.exactPowers[-exponent] : v * Self.exactPowers[exponent]
            if negative { v = -v }
            let int: Int64? = isInteger ? (negative ? -Int64(mantissa) : Int64(mantissa)) : nil
            return Number(value: v, integer: int)
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: p[start..<i]), as: UTF8.self)
        guard let v = Double(text) else { throw error("invalid number", at: start) }
        return Number(value: v, integer: isInteger ? Int64(text) : nil)
    }
}

/// A parsed JSON value (see `JSONScanner` for the choices made).
public indirect enum JSONValue: Sendable {
    case null
    case bool(Bool)
    /// An integer literal that fits Int64.
    case integer(Int64)
    /// Any other number (fraction, exponent, beyond Int64, NaN/±Infinity).
    case double(Double)
    case string(String)
    case array([JSONValue])
    /// Members in document order, duplicates kept.
    case object([(key: String, value: JSONValue)])

    /// The last member named `key` (Python's dict semantics for duplicate keys).
    public subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        return members.last { $0.key.unicodeScalars.elementsEqual(key.unicodeScalars) }?.value
    }

    /// The numeric value of `.integer` or `.double`.
    public var number: Double? {
        switch self {
        case let .integer(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }
}

extension JSONScanner {
    /// Reads a value expected to be of `kind` for `field` (named in the message): on another
    /// kind, or on null unless `nullable`, the first problem is kept in `problem` and the value
    /// skipped, so that a document with a bad field is still read to its end (the readers of
    /// the official record and routing forms report the first problem of a record). Returns
    /// whether the value is to be read.
    public mutating func expect(_ kind: Kind, field: @autoclosure () -> String, nullable: Bool = false,
                                problem: inout String?) throws -> Bool {
        let k = try peek()
        if k == kind { return true }
        if problem == nil, !(k == .null && nullable) {
            problem = k == .null ? "field '\(field())' is null" : "field '\(field())' is not \(kind)"
        }
        try skipValue()
        return false
    }
}
