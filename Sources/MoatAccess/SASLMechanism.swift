/// The SASL mechanisms Moat's server offers, in the order it advertises them (strongest first, so a
/// client that takes the first one it knows picks SCRAM over PLAIN).
public enum SASLMechanism: String, CaseIterable, Sendable {
    case scramSHA256 = "SCRAM-SHA-256"
    case scramSHA1 = "SCRAM-SHA-1"
    case plain = "PLAIN"
}
