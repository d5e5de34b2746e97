"""HTML templates of the console, built with handlers.console.html (escaped by default)."""
