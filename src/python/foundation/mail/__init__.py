"""Mail: settings, message templates with text and HTML parts, an async SMTP sender, and the
relay that sends what a service's mail outbox holds (docs/mail.md)."""
