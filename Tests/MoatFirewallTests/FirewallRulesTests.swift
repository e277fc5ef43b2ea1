import Testing
@testable import MoatFirewall
