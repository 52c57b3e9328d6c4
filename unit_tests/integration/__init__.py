"""Stream tests that drive the whole source through the CDK's `read`, with the Profile API mocked by
the CDK's HttpMocker (on requests-mock) and request and response builders, as Airbyte's connectors do.
A request nobody mocked, or a mocked one sent more or fewer times than answered, fails the test
(strict_http_mocker.py). The emulator is for integration_tests/.
"""
