import ArgumentParser
import C3POIndex
import Foundation

/// `--index DIR`: an index folder (Index/README.md), shared by every command that reads one.
public struct IndexOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Index folder written by `c3po-index build` (Index/README.md), e.g. Index/NAME.", valueName: "dir"))
    public var index: PathArgument

    public init() {}

    /// The folder, checked to exist (named as typed when it does not).
    public func directory() throws -> URL { try InputPaths.index(index) }

    /// The one place a command loads an index folder.
    public func load(deep: Bool = false) throws -> ReferenceIndex { try ReferenceIndex(directory: try directory(), deep: deep) }
}
