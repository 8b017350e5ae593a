import BerthJSON
import BerthPolicy
import BerthYAML

/// Policy files as people write them: YAML (one document or many) or JSON.
/// Apart from BerthPolicy so that what needs only Berth's own JSON (the
/// plugin, through the policies in force) does not carry a YAML parser.
extension PolicyDocuments {
    public static func read(_ text: String) throws(PolicyError) -> PolicySet {
        let documents: [LocatedDocument]
        do {
            documents = try YAMLDocuments.read(text)
        } catch {
            throw PolicyError(location: error.location, message: error.message)
        }
        return try read(documents: documents)
    }
}
