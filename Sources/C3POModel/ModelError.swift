import Foundation

public enum ModelError: Error, CustomStringConvertible {
    /// A config.json field is missing, of the wrong type, or out of range.
    case config(URL, field: String, String)
    /// A checkpoint tensor is missing, misshapen, or not expected by the architecture.
    case tensor(URL, name: String, String)
    case unsupportedModelType(URL, String)
    /// A routing override does not fit the model (names the layer or expert key).
    case override(String)
    case input(String)

    public var description: String {
        switch self {
        case let .config(url, field, why): return "\(url.path): field '\(field)': \(why)"
        case let .tensor(url, name, why): return "\(url.path): tensor '\(name)': \(why)"
        case let .unsupportedModelType(url, type): return "\(url.path): model_type '\(type)' is not supported (supported: \(ModelLoader.supportedTypes.joined(separator: ", ")))"
        case let .override(why): return "routing override: \(why)"
        case let .input(why): return why
        }
    }
}
