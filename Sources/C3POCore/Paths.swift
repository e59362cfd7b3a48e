import Foundation

/// Where the tools look for things by default. `C3PO_HOME` moves the whole cache
/// (default `~/.cache/c3po`); `C3PO_EMBEDDER` names an embedder folder directly.
public enum C3POPaths {
    public static var home: URL {
        let env = ProcessInfo.processInfo.environment
        if let h = env["C3PO_HOME"], !h.isEmpty { return URL(fileURLWithPath: h) }
        let userHome = env["HOME"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser
        return userHome.appendingPathComponent(".cache/c3po")
    }

    /// The all-MiniLM-L6-v2 folder that Scripts/bootstrap fills.
    public static var defaultEmbedder: URL {
        if let e = ProcessInfo.processInfo.environment["C3PO_EMBEDDER"], !e.isEmpty {
            return URL(fileURLWithPath: e)
        }
        return home.appendingPathComponent("models/all-MiniLM-L6-v2")
    }
}
