import C3POCore
import C3POIndex
import Foundation
import XCTest

/// The stored states' files (`c3po-index build --cache-states`): what is written is read back
/// (keys and values to float16's precision, the rest exactly), a reference without a state
/// reads as none, and offsets or shapes that do not fit are refused by name.
final class StoredStatesTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func entry(_ seed: Int, tokens n: Int, from: Int = 0, layers: Int = 2, width: Int = 4, hidden: Int = 3) -> TailSnapshot {
        var g = SplitMix64(seed: UInt64(seed))
        func values(_ k: Int) -> [Float] { (0..<k).map { _ in Float(g.uniform() * 4 - 2) } }
        return .init(tokens: (0..<n).map { seed * 100 + $0 }, fromLayer: from, keys: (0..<layers).map { _ in values(n * width) },
                     values: (0..<layers).map { _ in values(n * width) }, lastInputs: (0..<layers).map { _ in values(hidden) })
    }

    func testWhatIsWrittenIsReadBack() throws {
        let w = try StoredStates.Writer(folder: dir, fromLayer: 3, layers: 2, keyValueWidth: 4, hidden: 3)
        let written = [entry(1, tokens: 5, from: 3), nil, entry(2, tokens: 1, from: 3), entry(3, tokens: 7, from: 3)]
        for e in written { try w.append(e) }
        let shape = try w.finish()
        XCTAssertEqual(shape, IndexManifest.States(fromLayer: 3, layers: 2, keyValueWidth: 4, hidden: 3, references: 3, tokens: 13))
        let r = try StoredStates.Reader(directory: dir, shape: shape, count: 4)
        for (row, want) in written.enumerated() {
            let got = try r.entry(row)
            XCTAssertEqual(got == nil, want == nil, "row \(row)")
            guard let got, let want else { continue }
            XCTAssertEqual(got.tokens, want.tokens)
            XCTAssertEqual(got.lastInputs, want.lastInputs, "the inputs are stored in float32")
            for (a, b) in zip(Array(got.keys.joined()) + Array(got.values.joined()), Array(want.keys.joined()) + Array(want.values.joined())) {
                XCTAssertEqual(a, b, accuracy: abs(b) * 1e-3, "float16 keeps 11 bits")
                XCTAssertEqual(a, Float(Float16(b)))
            }
        }
        XCTAssertThrowsError(try r.entry(4)) { XCTAssertTrue("\($0)".contains("row 4 outside 0..<4"), "\($0)") }
        // The shapes must be the manifest's.
        var wrong = shape
        wrong.tokens = 12
        XCTAssertThrowsError(try StoredStates.Reader(directory: dir, shape: wrong, count: 4)) {
            XCTAssertTrue("\($0)".contains("states_tokens.npy: shape [13], expected [12]"), "\($0)")
        }
        XCTAssertThrowsError(try StoredStates.Reader(directory: dir, shape: shape, count: 5)) {
            XCTAssertTrue("\($0)".contains("states_rows.npy: shape [4, 3], expected [5, 3]"), "\($0)")
        }
    }

    /// One value of a state changed, the file's size the same: the state's checksum refuses it
    /// when it is read (a load checks these files by size only).
    func testAnEditedStateIsRefusedByItsChecksum() throws {
        let w = try StoredStates.Writer(folder: dir, fromLayer: 0, layers: 2, keyValueWidth: 4, hidden: 3)
        for e in [entry(1, tokens: 3), entry(2, tokens: 2)] { try w.append(e) }
        let shape = try w.finish()
        for file in [StoredStates.kvFile, StoredStates.inputsFile] {
            let url = dir.appendingPathComponent(file)
            let original = try Data(contentsOf: url)
            var data = original
            data[data.count - 1] ^= 0x40 // the last reference's last value
            try data.write(to: url)
            let r = try StoredStates.Reader(directory: dir, shape: shape, count: 2)
            XCTAssertNotNil(try r.entry(0), "\(file): the other state is sound")
            XCTAssertThrowsError(try r.entry(1)) {
                XCTAssertTrue("\($0)".contains("states_kv.npy: the stored state of row 1 does not match its checksum"), "\($0)")
            }
            try original.write(to: url)
        }
        XCTAssertEqual(try StoredStates.checkAll(try StoredStates.Reader(directory: dir, shape: shape, count: 2)), 2)
    }

    /// A row whose offsets point past the tokens stored (a hand-edited states_rows.npy).
    func testRowsOutsideTheStoredTokensAreRefused() throws {
        let w = try StoredStates.Writer(folder: dir, fromLayer: 0, layers: 2, keyValueWidth: 4, hidden: 3)
        try w.append(entry(1, tokens: 2))
        let shape = try w.finish()
        let rows = dir.appendingPathComponent(StoredStates.rowsFile)
        var data = try Data(contentsOf: rows)
        data.replaceSubrange((data.count - 24)..<(data.count - 16), with: withUnsafeBytes(of: Int64(1).littleEndian) { Data($0) })
        try data.write(to: rows)
        let r = try StoredStates.Reader(directory: dir, shape: shape, count: 1)
        XCTAssertThrowsError(try r.entry(0)) { XCTAssertTrue("\($0)".contains("states_rows.npy: row 0: tokens 1..<3 outside the 2 stored"), "\($0)") }
        XCTAssertThrowsError(try StoredStates.Writer(folder: dir, fromLayer: 0, layers: 2, keyValueWidth: 4, hidden: 3).append(entry(1, tokens: 2, width: 5))) {
            XCTAssertTrue("\($0)".contains("shapes disagree"), "\($0)")
        }
    }
}
