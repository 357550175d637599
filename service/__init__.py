"""The service's job rules bound to one deployment: shared by api/ and worker/.

Layering: clo/ <- persistence/ <- service/ <- api/, worker/.
"""
