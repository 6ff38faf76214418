"""Transfer-learning training of the bone-marrow classifier.

Keras 2 everywhere: TF 2.15 on Gaudi, TF >= 2.16 with tf_keras elsewhere.
"""
