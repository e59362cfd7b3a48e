import ArgumentParser
import C3POCore
import C3POIndex
import Foundation

/// `c3po-index verify`: the full check of an index folder, on demand.
public struct VerifyCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check an index folder: every file's size and SHA-256 against the manifest, then every file parsed and checked against the others.",
        discussion: """
        The tools that read an index (c3po-apply, query, info) make the same checks when they load it, before \
        faiss or the NPY reader touch a file; this command says which file is at fault, or that all are sound. \
        Exit status 0: sound; 1: a file truncated, swapped, edited, missing or inconsistent.
        """
    )

    @OptionGroup public var indexOptions: IndexOptions

    @Flag(help: "Print {\"index\", \"files\": [{\"name\", \"bytes\"}], \"records\", \"checksums\"} as JSON.")
    public var json = false

    public init() {}

    public func run() throws {
        let dir = try indexOptions.directory()
        let idx = try indexOptions.load(deep: true) // checksums, then every file parsed and cross-checked
        let checked = idx.verifiedFiles
        // Every stored state read back against its own checksum too.
        let states = try idx.storedStates.map(StoredStates.checkAll)
        if json {
            let obj: [String: Any] = ["index": dir.path, "records": idx.count, "checksums": idx.manifest.files != nil,
                                      "files": checked.map { ["name": $0.name, "bytes": $0.bytes] as [String: Any] }]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if checked.isEmpty {
            print("\(dir.path): sound (\(idx.count) records); its manifest lists no checksums (written before they were recorded)")
        } else {
            for c in checked { print("ok  \(c.name) (\(c.bytes) bytes)") }
            print("\(dir.path): sound (\(idx.count) records, \(checked.count) files by size and SHA-256\(states.map { ", \($0) stored states by their checksums" } ?? ""))")
        }
    }
}
