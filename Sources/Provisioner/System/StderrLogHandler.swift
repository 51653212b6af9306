import Foundation
import Logging

/// `program: message`, `program: warning: ...`, `program: error: ...` on stderr, nothing
/// else: the terminal is for people, and structured records go to the journal.
public struct StderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .notice
    let program: String

    public init(program: String) { self.program = program }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] } set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let level = event.level >= .error ? "error: " : (event.level == .warning ? "warning: " : "")
        FileHandle.standardError.write(Data("\(program): \(level)\(event.message)\n".utf8))
    }
}
